package generic

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// call makes one call of the method on the worker's connection: the
// worker's goroutine sends (in the round's mode), a second goroutine
// receives and times each response against the time its request's latency
// counts from, paired in order, one response per request (an echo such as
// FullDuplexCall). The call ends when the server has ended the stream
// after the half-close, or when ctx (the round's drain bound) is done.
func (w *worker) call(ctx context.Context, n int64) {
	c := w.d.c
	var cd *CallData
	if w.d.p.tmpl != nil || w.d.p.mdTmpl != nil {
		cd = w.d.p.callData(w.id, n)
	}
	msgs, err := w.d.p.forCall(cd)
	if err != nil {
		w.fail(err)
		return
	}
	md, err := w.d.p.metadata(cd)
	if err != nil {
		w.fail(err)
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if len(md) > 0 {
		cctx = metadata.NewOutgoingContext(cctx, metadata.New(md))
	}
	w.calls++
	cs, err := w.cc.NewStream(cctx, w.d.desc, w.d.path, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		w.fail(callError(ctx, err))
		return
	}
	rc := &receiver{w: w, cs: cs, done: make(chan struct{})}
	if c.Mode() == ModeWindowed {
		rc.credits = make(chan struct{}, c.Window)
	}
	go rc.run()
	sendErr := w.send(cs, rc, msgs, cd)
	_ = cs.CloseSend()
	<-rc.done // the server ends the stream, or ctx's cancel does
	w.responses += rc.got
	switch {
	case rc.err != nil && !errors.Is(rc.err, io.EOF):
		w.fail(callError(ctx, rc.err))
	case sendErr != nil && !errors.Is(sendErr, io.EOF):
		w.fail(sendErr)
	}
}

// callError names a call's error; a cancel by the round's drain bound is
// errCancelledAtDrain rather than the server's doing.
func callError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errCancelledAtDrain
	}
	return err
}

// errorKey is how errors are counted: the status code's name, or the
// error's text when it carries no status.
func errorKey(err error) string {
	if errors.Is(err, errCancelledAtDrain) {
		return errCancelledAtDrain.Error()
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return err.Error()
}

// send sends the call's messages in the round's mode until the call has
// sent StreamCallCount of them or the round stops (in the saturating
// modes a call in flight at the stop still sends all of them, as ghz's
// "wait" does), or the stream fails. Each message's latency origin goes to
// rc.times before the message is sent.
func (w *worker) send(cs grpc.ClientStream, rc *receiver, msgs []wire, cd *CallData) error {
	c := w.d.c
	mode := c.Mode()
	var interval int64
	if mode == ModePaced {
		interval = int64(float64(time.Second) / c.Rate)
	}
	for k := uint(0); c.StreamCallCount == 0 || k < c.StreamCallCount; k++ {
		if w.st.stopped.Load() && (!w.st.finish || c.StreamCallCount == 0) {
			return nil
		}
		msg := msgs[int(k%uint(len(msgs)))]
		if c.StreamDynamicMessages && w.d.p.tmpl != nil && k > 0 {
			ms, err := w.d.p.render(refresh(cd))
			if err != nil {
				return err
			}
			msg = ms[int(k%uint(len(ms)))]
		}
		var from int64
		switch mode {
		case ModePaced:
			var ok bool
			if from, ok = w.waitSchedule(rc, interval); !ok {
				return nil
			}
		case ModeWindowed:
			select {
			case rc.credits <- struct{}{}:
			case <-rc.done:
				return nil
			case <-w.st.stop:
				return nil
			}
			from = w.st.now()
		default:
			from = w.st.now()
		}
		rc.times.push(from)
		if mode == ModePaced {
			// and when it actually goes out: both are published before
			// the send, so its response always finds them
			rc.times.push(w.st.now())
		}
		if err := cs.SendMsg(msg); err != nil {
			return err
		}
		w.sent++
		if mode == ModeInterval && !w.pause(rc, c.StreamInterval) {
			return nil
		}
	}
	return nil
}

// waitSchedule waits for the next message's scheduled time and returns the
// time its latency counts from. That is the scheduled time, also when the
// sender is already past it: a send that blocked (flow control, a slow
// server) holds back the messages after it, and their wait is counted
// (the coordinated-omission correction). What the driver's own timer adds
// is not: when the timer wakes the sender late (recorded in w.lag), the
// message and any whose time passed meanwhile count from the wake-up
// (w.free). False when the round stopped, its schedule ended (a message
// scheduled at or after the round's bound is not sent: a round offers
// exactly Rate x bound per stream) or the stream ended while waiting.
func (w *worker) waitSchedule(rc *receiver, interval int64) (int64, bool) {
	at := w.next
	if bound := int64(w.d.roundBound()); bound > 0 && at >= bound {
		return 0, false // the round's schedule ends at its bound, not when the stop is noticed
	}
	w.next += interval
	now := w.st.now()
	if now >= at {
		from := max(at, w.free)
		if now > from {
			w.behind++
		}
		return from, true
	}
	if w.timer == nil {
		w.timer = time.NewTimer(time.Duration(at - now))
	} else {
		w.timer.Reset(time.Duration(at - now))
	}
	select {
	case <-w.timer.C:
	case <-rc.done:
		return 0, false
	case <-w.st.stop:
		return 0, false
	}
	woke := w.st.now()
	w.lag.add(woke - at)
	w.free = woke
	return woke, true
}

// pause is ghz's --stream-interval: a wait after each send; false when the
// round stopped (and calls do not finish) or the stream ended meanwhile.
func (w *worker) pause(rc *receiver, d time.Duration) bool {
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	stop := w.st.stop
	if w.st.finish && w.d.c.StreamCallCount > 0 {
		stop = nil // the call sends all its messages
	}
	select {
	case <-w.timer.C:
		return true
	case <-rc.done:
		return false
	case <-stop:
		return false
	}
}

// receiver reads one call's responses on its own goroutine: each response
// takes the oldest latency origin from times and is recorded in the
// worker's histograms (this goroutine is their only writer while the call
// lasts); in windowed mode it returns a credit. done closes when the
// stream has ended, with err the reason (io.EOF: ended cleanly).
type receiver struct {
	w       *worker
	cs      grpc.ClientStream
	times   sendTimes
	credits chan struct{}
	got     int64
	err     error
	done    chan struct{}
}

func (r *receiver) run() {
	defer close(r.done)
	w := r.w
	defer w.hist.flush()
	defer w.fromSend.flush()
	var m discard
	for {
		if err := r.cs.RecvMsg(&m); err != nil {
			r.err = err
			return
		}
		now := w.st.now()
		r.got++
		if from, ok := r.times.pop(); ok {
			w.hist.add(now - from)
			if w.fromSend != nil {
				if sent, ok := r.times.pop(); ok {
					w.fromSend.add(now - sent)
				}
			}
		}
		if r.credits != nil {
			select {
			case <-r.credits:
			default: // more responses than requests
			}
		}
	}
}
