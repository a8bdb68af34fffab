package engine

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/internal/registry"
)

// Service is a protocol the engine drives: the bidi method every client
// stream opens, the driver its attack behaviours speak, and what to do once
// every client has stopped. Its honest behaviours register separately
// (registerBehaviour with their Service name). The built-in services (chat,
// collab, game) register in init in their driver's file.
type Service struct {
	// Name is the scenario's `service:` value.
	Name string
	// Desc and Method are the bidi-streaming method a client stream opens.
	Desc   *grpc.StreamDesc
	Method string
	// Attacker builds the driver the attack behaviours (flooder,
	// slow-reader, malformed-sender, oversize-sender, reconnect-storm,
	// open-cancel) use on this service: an ordinary client whose paced
	// action the behaviour may replace; flood makes it send blindly.
	Attacker func(c Client, bodyBytes int, flood bool) (Driver, error)
	// EndOfRun, when set, runs once after every client has stopped and
	// before the verdicts: e.g. read the server's final state and emit it as
	// ServerState events (collab's document texts).
	EndOfRun func(ctx context.Context, r EndOfRun)
	// Prepare, Header and State serve a service whose method is known only
	// from the scenario (and perhaps the server's reflection): see
	// service_run.go.
	Prepare func(ctx context.Context, env RunEnv) (Service, error)
	Header  func(user, token string) metadata.MD
	State   any
}

// EndOfRun is what a Service's end-of-run step may use.
type EndOfRun interface {
	// HonestScopes are the scopes (rooms, documents, matches) of the run's
	// honest clients, sorted, each once.
	HonestScopes() []string
	// Dial connects to the first target that answers; the caller closes it.
	Dial() (*grpc.ClientConn, error)
	// Token is the bearer token user presents.
	Token(user string) string
	// Limit bounds one request to the server (the run's stop grace).
	Limit() time.Duration
	// Emit emits a run-wide event (Client -1).
	Emit(e *event.Event)
}

var services = registry.New[Service]("service")

// RegisterService makes a protocol available to scenarios by its name. It
// panics on a duplicate name.
func RegisterService(s Service) { services.Register(s.Name, s) }

// LookupService returns the service registered under name.
func LookupService(name string) (Service, bool) { return services.Lookup(name) }
