// Package streamhost runs the streams of a bidikit service (chat, collab,
// game): the registry of open streams, one receive loop per stream over
// wire.Frame, one writer per stream over a bounded sendq with the
// slow-consumer cut, drain / force / close, waiting for a stream's commits
// in flight, one flood policy (FloodPolicy) and one ACL interface. A service
// supplies only its domain side of a stream, a Handler.
//
// Goroutines per stream: two. The gRPC handler goroutine is the writer: the
// only goroutine that calls Send, and the one that returns the stream's
// status. One receive loop goroutine calls Recv and hands each message to
// the Handler. Nothing watches them: whatever ends a stream (drain, force,
// a fatal client error, a slow consumer, the client leaving) reaches the
// writer through its queue or its contexts, and the receive loop ends once
// gRPC cancels the stream after the writer returned.
//
// The writer is the handler goroutine (not the receive loop) because only
// the handler's return ends a stream with a status, and Recv on an idle
// stream cannot be interrupted, while the writer's wait can. (A stream
// context the server cancels, given by a grpc.InTapHandle, does end Recv,
// but grpc-go's RecvMsg then writes that context's CANCELLED status itself,
// before the handler can return the one the server chose; see
// docs/benchmarks.md, memory per idle member.) A writer
// blocked in Send on a client that stopped reading ends when that client
// reads again or goes away (keepalive); its queue, finished on overflow,
// bounds what it holds meanwhile.
package streamhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/sendq"
	"github.com/bidikit/bidikit/reference/wire"
)

// ErrShuttingDown is the status of a stream ended by Drain, by the end of
// Drain's grace (force) or by Close, and of a stream refused meanwhile.
var ErrShuttingDown = status.Error(codes.Unavailable, "server shutting down")

// Handler is a service's side of one stream. The host calls Receive and
// Close on the stream's receive loop goroutine, one call at a time; Write,
// Overflowed and Drain on its writer (the gRPC handler goroutine).
type Handler[T any] interface {
	// Receive decodes and handles one client message, whose bytes f holds
	// until the next receive. A non-nil error (a status) ends the stream
	// with it, after what is queued was written. A panic ends the stream
	// with INTERNAL.
	Receive(f *wire.Frame) error
	// Write sends a batch of queued items, in order. ctx ends when the
	// stream must end now. An error ends the stream with it.
	Write(ctx context.Context, batch []T) error
	// Overflowed returns the status of a stream cut as a slow consumer (its
	// queue went over its bound); it may Send a last event first.
	Overflowed() error
	// Drain runs once when the service drains, after the receive loop
	// stopped handling messages and this stream's commits in flight were
	// acknowledged (or a second passed): it may queue last events. The
	// host then closes the queue; the stream ends with ErrShuttingDown once
	// the queue is written.
	Drain()
	// Close releases what the stream holds (rooms, documents, a match). It
	// runs once, after the last Receive, possibly after the writer
	// returned.
	Close()
}

// Metrics are the host's gauges and counters for one service; nil ones are
// not updated.
type Metrics struct {
	// Streams counts open streams.
	Streams prometheus.Gauge
	// Queue counts items waiting in the streams' queues (each writer adds
	// its share once per batch). Leave it nil when the service accounts
	// queue depth itself.
	Queue prometheus.Gauge
	// Cuts counts streams cut as slow consumers.
	Cuts prometheus.Counter
	// ShuttingDown is set to 1 by Drain.
	ShuttingDown prometheus.Gauge
}

// Config configures a Host.
type Config struct {
	// Service names the service in logs and errors ("chat").
	Service string
	// QueueItems and QueueBytes bound each stream's send queue (sizes as
	// given to Push); over them the stream is cut as a slow consumer.
	QueueItems, QueueBytes int
	Metrics                Metrics
	// Log receives the slow-consumer and panic reports (give it the
	// service's own logger: the host adds no service attribute); nil
	// discards.
	Log *slog.Logger
}

// finishWait bounds how long an ending stream (client half-close, drain)
// waits for its commits in flight, whose acks go out before the end.
const finishWait = time.Second

// closeWait bounds how long Close waits for the streams' clean-up.
const closeWait = 10 * time.Second

// Host is one service's registry of open streams. Safe for concurrent use.
type Host[T any] struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex // guards streams, draining, idle
	streams  map[*Stream[T]]struct{}
	draining bool
	idle     chan struct{} // closed once draining and no stream is open

	loops sync.WaitGroup // receive loops still running (Close waits for them)
}

// New returns a Host.
func New[T any](cfg Config) *Host[T] {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Host[T]{cfg: cfg, log: log, streams: map[*Stream[T]]struct{}{}}
}

// Serve runs one stream ss on the calling gRPC handler goroutine and
// returns its final status. The stream's user comes from the auth
// interceptor (UNAUTHENTICATED without one); while the service drains it is
// refused with ErrShuttingDown. open builds the service's Handler for the
// new stream before anything is received; an error refuses the stream with
// it.
func (h *Host[T]) Serve(ss grpc.ServerStream, open func(*Stream[T]) (Handler[T], error)) error {
	user, ok := auth.UserFrom(ss.Context())
	if !ok || user == "" {
		return status.Errorf(codes.Unauthenticated, "%s: no authenticated user on the stream (is auth.StreamInterceptor installed?)", h.cfg.Service)
	}
	st, err := h.register(ss, user)
	if err != nil {
		return err
	}
	defer h.unregister(st)
	hd, err := open(st)
	if err != nil {
		st.closeQueue(err)
		return err
	}
	h.loops.Add(1)
	go st.receive(hd)
	return st.write(hd)
}

func (h *Host[T]) register(ss grpc.ServerStream, user string) (*Stream[T], error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining {
		return nil, ErrShuttingDown
	}
	st := newStream(h, ss, user)
	h.streams[st] = struct{}{}
	if g := h.cfg.Metrics.Streams; g != nil {
		g.Inc()
	}
	return st, nil
}

func (h *Host[T]) unregister(st *Stream[T]) {
	st.stop(nil) // releases the stream's contexts
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.streams, st)
	if g := h.cfg.Metrics.Streams; g != nil {
		g.Dec()
	}
	if h.draining && h.idle != nil && len(h.streams) == 0 {
		select {
		case <-h.idle:
		default:
			close(h.idle)
		}
	}
}

// Len returns the number of open streams.
func (h *Host[T]) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams)
}

// Draining reports whether Drain or Close began.
func (h *Host[T]) Draining() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.draining
}

// Drain begins graceful shutdown: new streams are refused with
// ErrShuttingDown; every open stream stops handling client messages, waits
// for its commits in flight, lets its Handler queue last events, writes
// what is queued and ends with ErrShuttingDown. Drain returns when every
// stream has ended, or when ctx ends first: then the remaining streams are
// ended at once (force) and ctx's error is returned.
func (h *Host[T]) Drain(ctx context.Context) error {
	h.mu.Lock()
	if !h.draining || h.idle == nil {
		h.draining = true
		h.idle = make(chan struct{})
		if len(h.streams) == 0 {
			close(h.idle)
		}
	}
	idle := h.idle
	open := h.snapshotLocked()
	h.mu.Unlock()
	if g := h.cfg.Metrics.ShuttingDown; g != nil {
		g.Set(1)
	}
	for _, st := range open {
		st.drainCancel(errDrain)
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		left := h.force()
		return fmt.Errorf("%s drain: %d streams still open: %w", h.cfg.Service, left, ctx.Err())
	}
}

// Close ends every stream still open with ErrShuttingDown and waits (up to
// 10 s) for their receive loops to end and release what they hold. New
// streams are refused from now on. Safe to call more than once.
func (h *Host[T]) Close() error {
	h.mu.Lock()
	h.draining = true
	h.mu.Unlock()
	h.force()
	done := make(chan struct{})
	go func() { h.loops.Wait(); close(done) }()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("%s close: stream clean-up still running after %v", h.cfg.Service, closeWait)
	}
}

// force ends every open stream now and returns how many there were.
func (h *Host[T]) force() int {
	h.mu.Lock()
	open := h.snapshotLocked()
	h.mu.Unlock()
	for _, st := range open {
		st.stop(errForce)
	}
	return len(open)
}

func (h *Host[T]) snapshotLocked() []*Stream[T] {
	out := make([]*Stream[T], 0, len(h.streams))
	for st := range h.streams {
		out = append(out, st)
	}
	return out
}

// Causes of a stream's contexts ending.
var (
	errDrain = errors.New("streamhost: draining")
	errForce = errors.New("streamhost: forced to end")
)

// newQueue returns a stream's bounded queue.
func (h *Host[T]) newQueue() *sendq.Queue[T] {
	return sendq.New[T](h.cfg.QueueItems, h.cfg.QueueBytes)
}
