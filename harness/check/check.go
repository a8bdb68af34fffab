// Package check turns a run's event stream into verdicts with evidence. Each
// checker lives in its own file and registers itself by name in init; the
// scenario format refers to checkers by these names and rejects unknown ones.
// A checker never talks to the network except through Env (the server's admin
// endpoints), and a client never decides a verdict.
//
// Adding a check touches one file plus its test. In NAME.go: the checker
// type (Observe, Verdict; Starter or ServiceAware when it needs them) and
// an init that calls Register("NAME", factory). The factory decodes its
// parameters with the decode it is given, into a struct with yaml tags and
// its defaults already set (noParams when it takes none), then validates
// them and returns an error naming the parameter. The scenario format then
// accepts `- NAME` and `- NAME: {param: value}`: it validates the params
// when the file is loaded (unknown or misspelt fields, wrong kinds and the
// factory's own errors at file:line:col, with a did-you-mean), keeps them
// as plain data (scenario.CheckSpec) and builds a fresh checker per run
// through New. In NAME_test.go: check.New("NAME", decode) fed events,
// passing and failing. For users, the check also gets its row in
// docs/scenarios.md ("What each check proves"); no code lists the checks.
package check

import (
	"context"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/verdict"
	"github.com/bidikit/bidikit/internal/registry"
)

// Status, Verdict, Evidence and their constants are harness/verdict's,
// named here too so that a checker speaks of its own verdict.
type (
	Status   = verdict.Status
	Evidence = verdict.Evidence
	Verdict  = verdict.Verdict
)

const (
	Pass          = verdict.Pass
	Fail          = verdict.Fail
	NotMeasurable = verdict.NotMeasurable
	// MaxEvidence bounds the evidence a verdict keeps; Violations still counts all.
	MaxEvidence = verdict.MaxEvidence
)

// Env is what a checker may consult besides events. Implemented by the
// engine; fields are nil when the target does not expose them.
type Env interface {
	// AdminURL is the base URL of the server's admin HTTP endpoint ("" when
	// unknown): /metrics, /healthz, /debug/pprof/goroutine.
	AdminURL() string
	// Channelz returns the number of open sockets and streams on the target
	// through gRPC channelz; ok=false when the target does not serve it.
	Channelz(ctx context.Context) (sockets, streams int, ok bool, err error)
	// Healthy checks the target's gRPC health service.
	Healthy(ctx context.Context) (bool, error)
}

// TargetHealth is one target's gRPC health after the run.
type TargetHealth struct {
	// Target is the address as given (host:port); Position its 1-based
	// place in the target list.
	Target   string
	Position int
	// Killed: the run's own server fault took it down (see
	// engine.DownReporter); it is not asked.
	Killed bool
	// Asked: it answered before the run (preflight) and was asked now.
	Asked bool
	// Err is nil when it answered SERVING.
	Err error
}

// TargetsEnv is implemented by an Env that drives several targets (the
// engine's): the health of each, in target order. status-codes uses it to
// leave out the targets a scenario expects down (expect_down); an Env
// without it is judged as a whole (Healthy).
type TargetsEnv interface {
	TargetsHealth(ctx context.Context) []TargetHealth
}

// Checker consumes events and returns a verdict.
type Checker interface {
	// Observe is called for every event in order, from one goroutine. It
	// must not block and keeps bounded state.
	Observe(e *event.Event)
	// Verdict is called once after the run and the checker's settle time.
	Verdict(ctx context.Context, env Env) Verdict
}

// Starter is implemented by checkers that need a baseline before load
// (leaks): Start is called before any client connects.
type Starter interface {
	Start(ctx context.Context, env Env) error
}

// ServiceAware is implemented by checkers whose contract depends on the
// service under test (status-codes: the codes each proto documents). The
// scenario calls SetService once, right after building the checker.
type ServiceAware interface {
	SetService(service string)
}

// Factory builds a checker. decode strictly decodes the scenario's
// parameters for the check into a struct pointer (nil node: leaves defaults);
// its errors name the file, line and field.
type Factory func(decode func(into any) error) (Checker, error)

// checks holds every registered checker factory.
var checks = registry.New[Factory]("check")

// Register makes a checker available under name. It panics on a duplicate
// name (a programming error caught at init).
func Register(name string, f Factory) { checks.Register(name, f) }

// Lookup returns the factory registered under name.
func Lookup(name string) (Factory, bool) { return checks.Lookup(name) }

// Names lists the registered checkers, sorted.
func Names() []string { return checks.Names() }

// New builds the checker registered under name.
func New(name string, decode func(any) error) (Checker, error) {
	f, err := checks.Get(name)
	if err != nil {
		return nil, err
	}
	return f(decode)
}
