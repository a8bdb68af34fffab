package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/scenario"
)

// vclient is one virtual client: a goroutine running streams one after the
// other until its end time. It takes every stream fault (fault.Target and
// the faults' own interfaces): fault methods return
// at once; those that write on the stream are queued to the send loop (cmds).
type vclient struct {
	r    *run
	plan *scenario.ClientPlan
	role *scenario.Role
	beh  scenario.Behaviour
	impl behaviourImpl
	svc  Service
	rng  *rand.Rand // send loop only
	em   emitter
	d    Driver

	rate      float64
	readDelay time.Duration
	// act is the paced action: the driver's act, or an attack's.
	act func(w Stream, n int) error
	// cycle, when non-zero, ends the stream cleanly and reconnects every cycle.
	cycle time.Duration
	// offline is how long the client stays away after a deliberate end
	// before it reconnects (resumer: messages pile up to be replayed).
	offline time.Duration

	// closeSentAt is when the current stream's CloseSend went out (zero:
	// not yet); owned by the goroutine running runStream.
	closeSentAt time.Time

	stopC       chan struct{} // closed at the client's end time
	cmds        chan func(w *writer) error
	stopReading atomic.Bool
	pausedUntil atomic.Int64 // time.Now().UnixNano() until which the client is paused

	mu     sync.Mutex // guards cancel and conn
	cancel context.CancelFunc
	conn   *conn
}

var _ fault.Client = (*vclient)(nil)

func (c *vclient) Index() int   { return c.plan.Index }
func (c *vclient) Role() string { return c.plan.Role }

// CancelStream implements fault.Client.
func (c *vclient) CancelStream() {
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// AbruptClose implements fault.Client: the TCP connection is closed (RST).
func (c *vclient) AbruptClose() {
	c.mu.Lock()
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		cn.closeRaw()
	}
}

// StopReading implements fault.Client.
func (c *vclient) StopReading() { c.stopReading.Store(true) }

// Pause implements fault.Client.
func (c *vclient) Pause(d time.Duration) { c.pausedUntil.Store(time.Now().Add(d).UnixNano()) }

func (c *vclient) paused() time.Duration {
	return time.Duration(c.pausedUntil.Load() - time.Now().UnixNano())
}

// HalfClose implements fault.Client.
func (c *vclient) HalfClose() {
	c.queue(func(w *writer) error { return errHalfClose })
}

// Burst implements fault.Client.
func (c *vclient) Burst(n int) {
	c.queue(func(w *writer) error { return c.d.Act(w, n) })
}

// SendMalformed implements fault.Client.
func (c *vclient) SendMalformed() {
	c.queue(func(w *writer) error { return w.Send(rawMessage(malformedBytes)) })
}

// SendOversized implements fault.Client.
func (c *vclient) SendOversized(n int) {
	o, ok := c.d.(Oversizer)
	if !ok {
		c.r.counters.faultFailed.Add(1) // this driver sends no oversized message
		return
	}
	c.queue(func(w *writer) error { return o.Oversized(w, n) })
}

// ResumeStale implements fault.Client.
func (c *vclient) ResumeStale(back uint64) {
	c.queue(func(w *writer) error {
		if r, ok := c.d.(Resumer); ok {
			r.Stale(back)
		}
		return ErrReconnect
	})
}

var errHalfClose = errors.New("half-close")

func (c *vclient) queue(f func(w *writer) error) {
	select {
	case c.cmds <- f:
	default:
		c.r.counters.faultDropped.Add(1)
	}
}

// ev fills the client's identity and the time into e and emits it.
func (c *vclient) ev(e *event.Event) {
	e.At = c.r.since()
	e.Client = c.plan.Index
	e.Role = c.plan.Role
	e.User = c.plan.User
	c.em.emit(e)
}

func (c *vclient) stopped() bool {
	select {
	case <-c.stopC:
		return true
	default:
		return false
	}
}

// runLoop runs streams until the client's end time or ctx is done.
func (c *vclient) runLoop(ctx context.Context) {
	cn, err := c.r.pool.get(c.plan.Index)
	if err != nil {
		c.ev(&event.Event{Kind: event.Disconnect, Code: codes.Unavailable, Detail: err.Error()})
		return
	}
	c.mu.Lock()
	c.conn = cn
	c.mu.Unlock()
	defer c.r.pool.release(c.plan.Index)
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		clean, reconnectNow := c.runStream(ctx, cn)
		if c.stopped() || ctx.Err() != nil {
			return
		}
		wait := backoff
		switch {
		case reconnectNow:
			wait = c.offline
			backoff = 50 * time.Millisecond
		case clean:
			backoff = 50 * time.Millisecond
		default:
			backoff = min(backoff*2, 2*time.Second)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.stopC:
				t.Stop()
				return
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

// runStream opens one stream and runs its send and receive loops until it
// ends. clean reports an OK end; reconnectNow a deliberate end (resumer
// cycle, ResumeStale, HalfClose) after which the client reconnects at once.
func (c *vclient) runStream(ctx context.Context, cn *conn) (clean, reconnectNow bool) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.cancel = cancel
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cancel = nil
		c.mu.Unlock()
	}()
	g, gctx := errgroup.WithContext(sctx)
	octx := c.svc.outgoing(gctx, c.plan.User, c.r.token(c.plan.User))
	desc, method := c.svc.Desc, c.svc.Method
	t0 := time.Now()
	st, err := cn.cc.NewStream(octx, desc, method)
	if err != nil {
		s := status.Convert(err)
		c.ev(&event.Event{Kind: event.Disconnect, Code: s.Code(), Detail: s.Message()})
		return false, false
	}
	// Detail names the target reached (pick_first: the first that answered).
	c.ev(&event.Event{Kind: event.Connect, Latency: time.Since(t0), Detail: cn.target()})
	w := &writer{c: c, st: st}
	recvDone := make(chan struct{})
	g.Go(func() error {
		defer close(recvDone)
		return c.recvLoop(gctx, st)
	})
	// The send loop runs on this goroutine (one goroutine fewer per
	// virtual client). As in the errgroup, an error of its own cancels the
	// receive loop, and whichever loop failed first decides the end: the
	// receive loop did when the group's context was done before the send
	// loop returned.
	deliberate, serr := c.sendLoop(gctx, w, recvDone)
	recvFirst := gctx.Err() != nil
	if serr != nil {
		cancel()
	}
	err = g.Wait()
	if serr != nil && (!recvFirst || err == nil) {
		err = serr
	}
	code, detail, field := codes.OK, "", ""
	var toClose time.Duration
	if !c.closeSentAt.IsZero() {
		toClose = time.Since(c.closeSentAt)
		c.closeSentAt = time.Time{}
	}
	if errors.As(err, new(closeGraceError)) {
		field = event.FieldCloseGrace
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			code, detail = codes.Canceled, "stream cancelled by the client"
		} else {
			s := status.Convert(err)
			code, detail = s.Code(), s.Message()
		}
	}
	if code == codes.Internal && strings.HasPrefix(detail, undecodable) {
		// grpc-go's client ended the stream itself: a server message did
		// not decode with the descriptors the harness holds (a server
		// breaking its contract, or a custom protocol's stale or wrong
		// descriptors). Which it is, no check can tell: the memberships
		// are not judged (Unread), and the end is not a status the server
		// sent.
		c.ev(&event.Event{Kind: event.Unread, Field: event.UnreadUndecodable,
			Detail: "a server message did not decode with the service's descriptors: " + strings.TrimPrefix(detail, undecodable)})
		field = event.FieldClientEnd
	}
	// The stream's end first, then the memberships it ended: a checker
	// sees whether the stream broke before it sees the Leaves.
	c.ev(&event.Event{Kind: event.Disconnect, Code: code, Detail: detail, Field: field, Latency: toClose})
	c.d.Ended()
	return code == codes.OK, deliberate
}

// undecodable starts the status grpc-go's client ends a stream with when a
// received message does not decode (rpc_util.go's recvAndDecompress).
const undecodable = "grpc: failed to unmarshal the received message"

// closeGraceError: the server did not end the stream within the grace
// after the client's CloseSend (a stream the server never ends is a leak).
type closeGraceError struct{ grace time.Duration }

func (e closeGraceError) Error() string {
	return fmt.Sprintf("server did not end the stream within %v after CloseSend", e.grace)
}

// GRPCStatus makes the end read as DEADLINE_EXCEEDED.
func (e closeGraceError) GRPCStatus() *status.Status {
	return status.New(codes.DeadlineExceeded, e.Error())
}

// recvLoop reads until io.EOF (nil) or the stream's status (its error).
func (c *vclient) recvLoop(ctx context.Context, st grpc.ClientStream) error {
	for {
		if c.stopReading.Load() {
			// The stream stays open and unread until the run ends; then
			// read to EOF so the stream still ends the interop way.
			select {
			case <-ctx.Done():
				return nil
			case <-c.stopC:
				c.stopReading.Store(false)
			}
		}
		if d := c.paused(); d > 0 {
			if !sleepCtx(ctx, d) {
				return nil
			}
		}
		if c.readDelay > 0 && !c.stopped() {
			select {
			case <-ctx.Done():
				return nil
			case <-c.stopC:
			case <-time.After(c.readDelay):
			}
		}
		m := c.d.Message()
		if err := st.RecvMsg(m); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		c.d.Handle(m)
	}
}

// maxCatchUp bounds how many missed sends a late sender makes back to back;
// slots beyond it are skipped and counted as "sender behind".
const maxCatchUp = 16

// sendEnded turns a send error into sendLoop's result: io.EOF from SendMsg
// means the stream is over and its status comes from the receive loop, so
// it waits for that loop (or ctx) and reports no error of its own.
func sendEnded(ctx context.Context, recvDone <-chan struct{}, err error) (bool, error) {
	if err == io.EOF {
		select {
		case <-recvDone:
		case <-ctx.Done():
		}
		return false, nil
	}
	return false, err
}

// closeAndDrain ends our side of w and waits for the server's end, at most
// the run's stop grace (then closeGraceError).
func (c *vclient) closeAndDrain(ctx context.Context, w *writer, recvDone <-chan struct{}) error {
	if err := w.st.CloseSend(); err != nil {
		return err
	}
	c.closeSentAt = time.Now()
	t := time.NewTimer(c.r.opts.stopGrace)
	defer t.Stop()
	select {
	case <-recvDone:
		return nil
	case <-ctx.Done():
		return nil
	case <-t.C:
		return closeGraceError{c.r.opts.stopGrace}
	}
}

// sendLoop joins, then paces the client's action open-loop at its rate,
// runs queued fault commands, and ends the stream the interop way at the
// client's end time. again reports a deliberate end that wants a reconnect.
func (c *vclient) sendLoop(ctx context.Context, w *writer, recvDone <-chan struct{}) (again bool, err error) {
	sendErr := func(err error) (bool, error) { return sendEnded(ctx, recvDone, err) }
	closeAndDrain := func() error { return c.closeAndDrain(ctx, w, recvDone) }
	if err := c.d.Start(w); err != nil {
		return sendErr(err)
	}
	var tick *time.Timer
	var tickC <-chan time.Time
	var p pacer
	if c.rate > 0 {
		p = newPacer(time.Now(), c.rate, c.rng)
		tick = time.NewTimer(p.wait(time.Now()))
		defer tick.Stop()
		tickC = tick.C
	}
	wk, _ := c.d.(Waker)
	var wakeC <-chan struct{}
	if wk != nil {
		wakeC = wk.Wake()
	}
	var cycleC <-chan time.Time
	if c.cycle > 0 {
		t := time.NewTimer(c.cycle)
		defer t.Stop()
		cycleC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-recvDone:
			return false, nil
		case <-c.stopC:
			if f, ok := c.d.(Finisher); ok {
				f.Finish(ctx, w, recvDone)
			}
			return false, closeAndDrain()
		case <-cycleC:
			return true, closeAndDrain()
		case f := <-c.cmds:
			switch err := f(w); {
			case err == errHalfClose:
				// Keep reading until the server ends the stream, as at
				// the client's end: at most the stop grace (a stream the
				// server does not end is status-codes' to judge), and
				// the Disconnect says how long it took (checks date the
				// end of the client's memberships from the CloseSend).
				return true, closeAndDrain()
			case err == ErrReconnect:
				return true, closeAndDrain()
			case err != nil:
				return sendErr(err)
			}
		case <-wakeC:
			switch err := wk.OnWake(w); {
			case err == ErrReconnect:
				return true, closeAndDrain()
			case err != nil:
				return sendErr(err)
			}
		case now := <-tickC:
			n, skipped := p.due(now)
			if skipped > 0 {
				c.r.counters.behind.Add(int64(skipped))
			}
			if c.paused() > 0 {
				n = 0
			}
			if n > 0 {
				if err := c.act(w, n); err != nil {
					return sendErr(err)
				}
			}
			tick.Reset(p.wait(time.Now()))
		}
	}
}

// pacer schedules sends by time (open loop): slot k is due at
// start + offset + k*interval whether or not earlier sends were answered.
type pacer struct {
	start    time.Time
	interval time.Duration
	n        int64 // slots consumed
}

func newPacer(now time.Time, rate float64, rng *rand.Rand) pacer {
	iv := time.Duration(float64(time.Second) / rate)
	if iv <= 0 {
		iv = time.Microsecond
	}
	// A random phase so that clients do not send in lockstep.
	return pacer{start: now.Add(time.Duration(rng.Int64N(int64(iv)))), interval: iv}
}

// wait is the time until the next slot.
func (p *pacer) wait(now time.Time) time.Duration {
	return max(p.start.Add(time.Duration(p.n)*p.interval).Sub(now), 0)
}

// due consumes the slots that are due: n to send now (at most maxCatchUp)
// and skipped, the ones the sender is too late for.
func (p *pacer) due(now time.Time) (n, skipped int) {
	slots := int64(now.Sub(p.start)/p.interval) + 1
	d := slots - p.n
	if slots <= 0 || d <= 0 {
		return 0, 0
	}
	p.n = slots
	if d > maxCatchUp {
		return maxCatchUp, int(d - maxCatchUp)
	}
	return int(d), 0
}

// sleepCtx sleeps d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
