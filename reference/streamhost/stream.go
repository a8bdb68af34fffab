package streamhost

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"

	"github.com/bidikit/bidikit/reference/sendq"
)

// Stream is one open stream as its service sees it: who it belongs to, its
// bounded send queue (pushed to by anyone, popped by its writer alone) and
// its commits in flight.
type Stream[T any] struct {
	host *Host[T]
	ss   grpc.ServerStream
	user string
	q    *sendq.Queue[T]

	// drainCtx ends when the service drains (cause errDrain) or the stream
	// must end now; forceCtx only in the second case (cause errForce), or
	// when the stream ended. Both derive from the stream's context without a
	// goroutine of their own.
	drainCtx    context.Context
	drainCancel context.CancelCauseFunc
	forceCtx    context.Context
	forceCancel context.CancelCauseFunc

	draining atomic.Bool   // the receive loop handles no further message
	busy     chan struct{} // holds a token while the receive loop handles a message

	endMu    sync.Mutex
	end      error       // the status the queue was closed with (nil: a clean end)
	ended    atomic.Bool // the queue was closed on purpose: a refused Push is no overflow
	cutOnce  atomic.Bool
	inflight atomic.Int64
	zero     chan struct{} // poked when inflight drops to 0
}

func newStream[T any](h *Host[T], ss grpc.ServerStream, user string) *Stream[T] {
	st := &Stream[T]{host: h, ss: ss, user: user, q: h.newQueue(),
		busy: make(chan struct{}, 1), zero: make(chan struct{}, 1)}
	st.forceCtx, st.forceCancel = context.WithCancelCause(ss.Context())
	st.drainCtx, st.drainCancel = context.WithCancelCause(st.forceCtx)
	return st
}

// User returns the authenticated user of the stream.
func (st *Stream[T]) User() string { return st.user }

// Context returns the stream's context: it ends when the stream ends or
// must end now (force).
func (st *Stream[T]) Context() context.Context { return st.forceCtx }

// Queue returns the stream's send queue, for services that manage what
// they queue themselves (game's newest-state-only tick updates). A Push
// refused by an overflowing queue is seen by the writer, which cuts the
// stream.
func (st *Stream[T]) Queue() *sendq.Queue[T] { return st.q }

// Push queues v (size bytes, for the queue's byte bound) for the writer
// without blocking. A push refused by a full queue cuts the stream as a
// slow consumer (counted at once); one refused because the stream is
// ending is dropped. It reports whether v was queued.
func (st *Stream[T]) Push(v T, size int) bool {
	if st.q.Push(v, size) {
		return true
	}
	if !st.ended.Load() {
		st.markCut()
	}
	return false
}

// Close ends the stream with end (a status; nil for OK) once what is queued
// was written: the queue takes no more items. The first end given wins.
// Safe from any goroutine.
func (st *Stream[T]) Close(end error) { st.closeQueue(end) }

// Ended reports whether the stream's queue was closed on purpose (the
// stream is ending): what is pushed now is dropped.
func (st *Stream[T]) Ended() bool { return st.ended.Load() }

func (st *Stream[T]) closeQueue(end error) {
	st.endMu.Lock()
	if !st.ended.Load() {
		st.end = end
		st.ended.Store(true)
	}
	st.endMu.Unlock()
	st.q.Close()
}

func (st *Stream[T]) endStatus() error {
	st.endMu.Lock()
	defer st.endMu.Unlock()
	if st.end == nil && st.draining.Load() {
		return ErrShuttingDown
	}
	return st.end
}

// Cut reports whether the stream was cut as a slow consumer (a push or pop
// found its queue over the bound). A Handler whose contract ends a cut
// stream at once, without the events still queued, checks it while it
// writes.
func (st *Stream[T]) Cut() bool { return st.cutOnce.Load() }

// markCut counts the stream as cut for being a slow consumer, once.
func (st *Stream[T]) markCut() {
	if st.cutOnce.CompareAndSwap(false, true) {
		if c := st.host.cfg.Metrics.Cuts; c != nil {
			c.Inc()
		}
		st.host.log.Info("slow consumer cut", "user", st.user)
	}
}

// CommitStarted notes a commit of this stream in flight: an ending stream
// waits (up to a second) for CommitDone, so that its ack goes out first.
func (st *Stream[T]) CommitStarted() { st.inflight.Add(1) }

// CommitDone notes that a commit CommitStarted counted has been answered.
func (st *Stream[T]) CommitDone() {
	if st.inflight.Add(-1) <= 0 {
		select {
		case st.zero <- struct{}{}:
		default:
		}
	}
}

// Inflight returns the number of commits in flight.
func (st *Stream[T]) Inflight() int64 { return st.inflight.Load() }

// waitInflight waits until no commit is in flight or ctx ends.
func (st *Stream[T]) waitInflight(ctx context.Context) error {
	for st.inflight.Load() > 0 {
		select {
		case <-st.zero:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// finishWait waits (bounded by finishWait and force) for the commits in
// flight.
func (st *Stream[T]) finishInflight() {
	if st.inflight.Load() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(st.forceCtx, finishWait)
	_ = st.waitInflight(ctx)
	cancel()
}

// stop ends the stream's contexts: with errForce the writer returns
// ErrShuttingDown at once; with nil (the writer returned) it only releases
// them.
func (st *Stream[T]) stop(cause error) {
	st.forceCancel(cause)
	st.drainCancel(cause)
}
