// Package scenario is the scenario file format: its types (this file), the
// behaviours a role may have (behaviours.go), strict YAML parsing with errors
// naming file, line and field (parse.go), the seeded plan (plan.go), and
// building checkers and faults from the specs (build.go). A parsed Scenario
// is plain data (no closures, no YAML nodes): its check and fault specs are
// a name and the params as written, built through the registries on demand.
package scenario

import (
	"time"

	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/protocol"
	"github.com/bidikit/bidikit/harness/threshold"
	"github.com/bidikit/bidikit/internal/strictyaml"
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
	// Fault is the registered fault name; Scope what it acts on (its
	// registration's).
	Fault string
	Scope fault.Scope
	// Params are the step's `params:`, as written (validated at parse
	// time); New decodes them through the fault registry.
	Params strictyaml.Raw
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

// CheckSpec is one requested check, as plain data: New makes its
// checker through the check registry (or harness/threshold).
type CheckSpec struct {
	// Name is the registered check name, or a threshold's name
	// ("threshold honest p99 <= 50ms") when Threshold is set.
	Name string
	// Params are the check's parameters as written (`name: {params}`;
	// none for a bare name), validated at parse time.
	Params strictyaml.Raw
	// Service is the scenario's service, given to a check.ServiceAware
	// checker.
	Service string
	// Threshold, when set, is the `thresholds:` bound this check judges.
	Threshold *threshold.Spec
	// NotMeasurable, when set, is why a custom scenario's protocol mapping
	// cannot feed this check: New still checks its params, then gives a
	// checker that observes nothing and is not measurable with this reason.
	NotMeasurable string
	// Line is the check's line in the file, for messages.
	Line int
}
