package streamhost

import (
	"context"
	"errors"

	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/reference/sendq"
)

// write is the stream's writer, on the gRPC handler goroutine: it pops
// batches from the queue and hands them to the Handler until the queue is
// closed (the status it was closed with), overflows (the Handler's slow
// consumer status), the service forces the end (ErrShuttingDown) or the
// client goes away. A drain is run here, between batches.
func (st *Stream[T]) write(hd Handler[T]) error {
	var batch []T
	ctx := st.drainCtx // until the drain ran; then forceCtx
	depth := 0         // this stream's share of the queue gauge
	gauge := st.host.cfg.Metrics.Queue
	setDepth := func(n int) {
		if gauge != nil && n != depth {
			gauge.Add(float64(n - depth))
			depth = n
		}
	}
	defer setDepth(0)
	for {
		var err error
		batch, err = st.q.Pop(ctx, batch[:0])
		if len(batch) > 0 {
			setDepth(len(batch))
			werr := hd.Write(st.forceCtx, batch)
			clear(batch)
			if gauge != nil {
				waiting, _ := st.q.Len()
				setDepth(waiting)
			}
			if werr != nil {
				return werr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, sendq.ErrOverflow):
			st.markCut()
			return hd.Overflowed()
		case errors.Is(err, sendq.ErrClosed):
			return st.endStatus()
		case errors.Is(context.Cause(st.forceCtx), errForce):
			return ErrShuttingDown
		case st.forceCtx.Err() == nil && errors.Is(context.Cause(ctx), errDrain):
			st.drain(hd)
			ctx = st.forceCtx
		default: // the client went away
			return status.FromContextError(st.forceCtx.Err()).Err()
		}
	}
}

// drain is the stream's part of a service drain, on the writer: the
// receive loop handles no further message (the one being handled is
// finished first), the commits in flight are answered, the Handler queues
// its last events, and the queue is closed.
func (st *Stream[T]) drain(hd Handler[T]) {
	st.draining.Store(true)
	select {
	case st.busy <- struct{}{}:
		<-st.busy
	case <-st.forceCtx.Done():
	}
	st.finishInflight()
	hd.Drain()
	st.closeQueue(ErrShuttingDown)
}
