// Package fault injects failures into a run. Each fault is a small value in
// its own file that registers itself by name in init. A fault only says what
// happens; when it fires, and to which clients (fraction, probability), is
// decided by the scenario's schedule, outside the fault.
//
// Adding a fault touches one file plus its test. In NAME.go: the fault type
// (Inject) and an init that calls Register(Spec{Name, Scope, Summary, New}).
// New decodes the parameters with the decode it is given, into a struct
// with yaml tags and its defaults set (noParams when it takes none), and
// rejects impossible values with paramErr (a *ParamError, which the parser
// places at the parameter's line). A Stream fault reaches its targets
// through forEach and the narrow interfaces clients already implement
// (HalfCloser, AbruptCloser, Pauser, ... together Client); a Connection
// fault through Env.Proxy (toxiproxy); a ServerProcess fault through
// Env.Server. The scenario format then accepts `fault: NAME` with `params:`,
// validated when the file is loaded (errors at file:line:col, with a
// did-you-mean), kept as plain data (scenario.FaultStep) and built afresh
// for every firing. In NAME_test.go: fault.New("NAME", decode) injected
// into fake targets (see fault_suite_test.go's fakeClient).
//
// Only a stream fault that needs a client capability none of the existing
// interfaces offer touches more: its interface goes in its own file, and
// the engine's virtual client (harness/engine) and Client gain the method.
// For users, the fault also gets its row in docs/scenarios.md ("Faults").
package fault

import (
	"context"

	toxiproxy "github.com/Shopify/toxiproxy/v2"

	"github.com/bidikit/bidikit/internal/registry"
)

// Target is one virtual client a stream-level fault acts on. What a fault
// does to it is the fault's own narrow interface, declared in the fault's
// file (HalfCloser, Burster, ...); the engine's virtual clients implement
// them all. Their methods return at once and are safe to call from the
// fault scheduler's goroutine.
type Target interface {
	// Index is the client's position in the plan; Role its role name.
	Index() int
	Role() string
}

// Client is a target that takes every stream fault of this package: what
// the engine's virtual clients are. A fault asks only for its own interface.
type Client interface {
	Target
	AbruptCloser
	Burster
	HalfCloser
	MalformedSender
	OversizedSender
	Pauser
	ReadStopper
	StaleResumer
	StreamCanceller
}

// Server is what a server-level fault can do; available only when the harness
// started the server as a subprocess (--spawn-server).
type Server interface {
	// Kill sends SIGKILL and waits for the process to exit.
	Kill() error
	// Restart starts the server again on the same address and database and
	// waits until it serves.
	Restart(ctx context.Context) error
}

// Env is the run's shared machinery a fault may use.
type Env interface {
	// Proxy is the in-process toxiproxy proxy that every client connection
	// goes through, or nil when the run has no connection-level faults.
	Proxy() *toxiproxy.Proxy
	// Server controls the spawned server, or nil when the harness does not
	// own the server process.
	Server() Server
}

// Fault is one failure. Inject applies it to targets (the clients the
// schedule chose; empty for run-wide faults) and returns once it is in
// effect. A fault with a duration undoes itself when ctx is done or its
// duration has passed, without blocking Inject.
type Fault interface {
	Inject(ctx context.Context, env Env, targets []Target) error
}

// Scope says what a fault acts on, so the scheduler knows whether it needs
// clients, the proxy or the server.
type Scope int

const (
	// Stream faults act on chosen clients' streams.
	Stream Scope = iota
	// Connection faults act on the toxiproxy proxy in front of the server.
	Connection
	// ServerProcess faults act on the spawned server process.
	ServerProcess
)

// Factory builds a fault from its scenario parameters. decode strictly
// decodes them into a struct pointer; its errors name file, line and field.
type Factory func(decode func(into any) error) (Fault, error)

// Spec is a registered fault kind.
type Spec struct {
	Name    string
	Scope   Scope
	Summary string
	New     Factory
}

// faults holds every registered fault kind.
var faults = registry.New[Spec]("fault")

// Register makes a fault available by name. It panics on a duplicate name.
func Register(s Spec) { faults.Register(s.Name, s) }

// Lookup returns the fault kind registered under name.
func Lookup(name string) (Spec, bool) { return faults.Lookup(name) }

// Names lists the registered faults, sorted.
func Names() []string { return faults.Names() }

// New builds the fault registered under name.
func New(name string, decode func(any) error) (Fault, Spec, error) {
	s, err := faults.Get(name)
	if err != nil {
		return nil, Spec{}, err
	}
	f, err := s.New(decode)
	return f, s, err
}
