package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/event"
)

// Driver is one virtual client's protocol: what it sends when a stream
// opens and at each paced action, and what the messages it receives mean,
// told as events (Client.Emit). The engine owns the stream: it opens it
// (the Service's method), runs a send loop and a receive loop, reconnects,
// paces and injects faults. The send loop calls every method that writes
// (Start, Act and the optional OnWake, Finish, Oversized, Stale); the
// receive loop calls Message and Handle; Ended runs after both loops have
// returned. State the two loops share is guarded inside the driver.
//
// A driver may also implement Waker, Finisher, Resumer, Oversizer and
// Stopper; the engine uses what it finds.
type Driver interface {
	// Message returns the message the receive loop reads into next (it
	// may be reused: Handle is done with it before the next Message).
	Message() proto.Message
	// Start sends what opens the client's scopes on a new stream (join,
	// open, resume from the last position).
	Start(s Stream) error
	// Act sends n paced messages.
	Act(s Stream, n int) error
	// Handle processes one received message: it emits what it means.
	Handle(m proto.Message)
	// Ended runs when a stream has ended, after its Disconnect event: Leave
	// events for the memberships the end implied, per-stream state reset.
	Ended()
}

// Stream is the send side of one open stream; only the send loop uses it.
type Stream interface {
	// Send writes one message (a proto.Message, or raw bytes as a []byte,
	// which the engine's codec passes through unencoded).
	Send(m any) error
}

// ErrReconnect, returned by a driver's OnWake (or a fault's command), ends
// the stream the interop way (CloseSend, read to the end) and reconnects.
var ErrReconnect = errors.New("reconnect")

// Waker is a driver whose receive loop hands work to the send loop: Wake
// is signalled when there is some, and the send loop then calls OnWake
// (resends after a Joined, the next buffered op after an Ack).
type Waker interface {
	Wake() <-chan struct{}
	OnWake(s Stream) error
}

// Finisher is a driver with something to do at the client's end time,
// before CloseSend: wait for its last acknowledgements, report its final
// state. It must return by the time ctx is done or recvDone is closed.
type Finisher interface {
	Finish(ctx context.Context, s Stream, recvDone <-chan struct{})
}

// Resumer is a driver that resumes from a position: Stale moves its
// positions back by back (0: from the beginning) for the next Start (the
// resume-stale fault).
type Resumer interface {
	Stale(back uint64)
}

// Oversizer is a driver that can send one message carrying n bytes of
// payload (the oversize-sender behaviour and the oversized fault).
type Oversizer interface {
	Oversized(s Stream, n int) error
}

// Cycler is a driver whose client ends its stream deliberately every
// `every`, stays away `offline`, and reconnects (a resumer); the engine
// asks it once, when RegisterBehaviour builds the client.
type Cycler interface {
	Cycle() (every, offline time.Duration)
}

// Stopper is a driver told once that its client has stopped for good.
type Stopper interface {
	Stopped()
}

// Client is what a driver knows of the virtual client it speaks for.
type Client interface {
	// Index is the client's position in the plan; User its user id (and
	// bearer token unless the run gives one); Role its role's name.
	Index() int
	User() string
	Role() string
	// Scopes are the rooms, documents or matches the plan gave it.
	Scopes() []string
	// RunID tells this run's messages from an earlier run's.
	RunID() string
	// Rand is the client's seeded generator (send loop only).
	Rand() *rand.Rand
	// Emit stamps e with the client's identity and the run's clock and
	// hands it to the judge.
	Emit(e *event.Event)
	// ServiceState is the run's Service.State: what the service's Prepare
	// made for this run's drivers (nil for a service without one).
	ServiceState() any
}

// User implements Client.
func (c *vclient) User() string { return c.plan.User }

// Scopes implements Client.
func (c *vclient) Scopes() []string { return c.plan.Scopes }

// RunID implements Client.
func (c *vclient) RunID() string { return c.r.opts.runID }

// Rand implements Client.
func (c *vclient) Rand() *rand.Rand { return c.rng }

// Emit implements Client.
func (c *vclient) Emit(e *event.Event) { c.ev(e) }

// ServiceState implements Client.
func (c *vclient) ServiceState() any { return c.svc.State }

var _ Client = (*vclient)(nil)

// writer is the engine's Stream: the send side of one grpc.ClientStream.
type writer struct {
	c  *vclient
	st grpc.ClientStream
}

// Send implements Stream.
func (w *writer) Send(m any) error { return w.st.SendMsg(m) }
