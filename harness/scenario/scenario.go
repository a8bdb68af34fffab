// Package scenario is the scenario file format: its types (this file), the
// behaviours a role may have (behaviours.go), strict YAML parsing with errors
// naming file, line and field (parse.go), and the seeded plan (plan.go).
package scenario

import (
	"time"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/protocol"
	"github.com/bidikit/bidikit/harness/threshold"
)

// Services a scenario may target.
const (
	Chat   = "chat"
	Collab = "collab"
	Game   = "game"
	// Custom is any gRPC bidi method described by the scenario's
	// `protocol:` block (harness/protocol; see custom.go).
	Custom = "custom"
)

// Scenario is one parsed, validated scenario file.
type Scenario struct {
	// File is the path the scenario was read from.
	File string
	// Source is the YAML the scenario was decoded from: its file's bytes,
	// with the --set overrides in it (Apply). A raw shard file carries it,
	// so a merge decodes exactly what the run did.
	Source      []byte
	Name        string
	Description string
	Service     string
	Seed        int64
	Duration    time.Duration
	Ramp        time.Duration
	// Settle is how long the run waits after clients stop before checks that
	// need quiet (convergence, leaks) evaluate.
	Settle time.Duration
	// StreamsPerConn is how many clients share one TCP connection (1 = one
	// connection per client, the default).
	StreamsPerConn int
	Roles          []Role
	Faults         []FaultStep
	Checks         []CheckSpec
	// Thresholds are the `thresholds:` block's bounds, in file order; each
	// is also in Checks (after the listed checks), named by its Name.
	Thresholds []threshold.Spec
	// Protocol is the `protocol:` block of a Custom scenario (nil for the
	// other services): read and position-checked, compiled against the
	// descriptors by the custom driver when the run starts (and already
	// at parse time when they come from a protoset or .proto files).
	Protocol *protocol.Spec
}

// Clients is the total client count over all roles.
func (s *Scenario) Clients() int {
	n := 0
	for _, r := range s.Roles {
		n += r.Count
	}
	return n
}

// Role is a group of identical virtual clients.
type Role struct {
	Name      string
	Count     int
	Behaviour string
	// Rate is messages (or inputs, or operations) per second per client,
	// paced open-loop; 0 means the behaviour's default.
	Rate float64
	// Scopes is how many rooms/documents/matches the role's clients spread
	// over; clients pick scopes from the seeded random source.
	Scopes int
	// ScopePrefix names the scopes: "<prefix>-<i>" (default "room", "doc",
	// "match"). Roles with the same prefix share scopes.
	ScopePrefix string
	// Start and Stop bound when the role is active within the run (Stop 0 =
	// until the end).
	Start, Stop time.Duration
	// Params is the behaviour's parameter struct, a pointer to the type the
	// behaviour's Behaviour.Params returns, already decoded and validated.
	Params any
}

// FaultStep is one scheduled fault.
type FaultStep struct {
	// Fault is the registered fault name; Kind its registration.
	Fault string
	Kind  fault.Spec
	// New builds a fresh fault value from the step's parameters.
	New func() (fault.Fault, error)
	// At is when the fault first fires; Every, when non-zero, repeats it
	// until Until (0 = the end of the run).
	At, Every, Until time.Duration
	// Roles limits the candidate clients (empty = all roles).
	Roles []string
	// Fraction of the candidates chosen each firing (0 = use Count).
	Fraction float64
	// Count of candidates chosen each firing when Fraction is 0 (0 with
	// Fraction 0 means all candidates).
	Count int
	// Probability that a firing happens at all (1 = always).
	Probability float64
	// Line is the step's line in the file, for messages.
	Line int
}

// CheckSpec is one requested check.
type CheckSpec struct {
	Name string
	// New builds a fresh checker from the step's parameters.
	New  func() (check.Checker, error)
	Line int
}
