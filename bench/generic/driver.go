package generic

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bidikit/bidikit/bench"
	"github.com/bidikit/bidikit/harness/protocol"
)

// driver is bidikit's load generator for one method: the method, its
// encoded requests and the dial credentials, built once and run per round.
// It is its own (not ghz's runner) so that a message costs one SendMsg of
// bytes encoded in advance and a response one RecvMsg that decodes
// nothing: see the README's design notes.
type driver struct {
	c     Config
	md    protoreflect.MethodDescriptor
	p     *payload
	creds credentials.TransportCredentials
	path  string
	desc  *grpc.StreamDesc
}

func newDriver(c Config, md protoreflect.MethodDescriptor, creds credentials.TransportCredentials) (*driver, error) {
	p, err := newPayload(md, c.Data, c.Metadata, c.StreamDynamicMessages)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return &driver{c: c, md: md, p: p, creds: creds, path: protocol.FullMethod(md),
		desc: &grpc.StreamDesc{StreamName: string(md.Name()), ServerStreams: true, ClientStreams: true}}, nil
}

// round is one tool's figures for one round.
type round struct {
	messages  int64 // sent
	responses int64
	calls     int64
	elapsed   time.Duration
	hist      *hdrhistogram.Histogram // per-message latency (ours); nil for ghz
	fromSend  *hdrhistogram.Histogram // paced: from the actual send
	lag       *hdrhistogram.Histogram // paced: how late the sender's timer woke
	behind    int64                   // paced: messages sent after their scheduled time
	latency   bench.Latency           // ghz: per call
	errors    map[string]int64
}

// roundState is what a round's workers share: when to stop sending, the
// calls left under -n, and the request numbers. Written rarely; the
// per-message path reads only stopped.
type roundState struct {
	epoch   time.Time
	stopped atomic.Bool
	stop    chan struct{} // closed when the round stops sending
	calls   atomic.Int64  // calls left (-n); unused otherwise
	reqNum  atomic.Int64
	// finish: calls in flight at the stop still send all their messages
	// (ghz's "wait"), so saturating rounds compare with ghz's
	finish bool
}

func (s *roundState) now() int64 { return int64(time.Since(s.epoch)) }

// run is one round: Connections connections, Concurrency workers each
// making calls one after another until the round stops (Duration or
// MaxDuration passed, -n calls claimed, or ctx done), then the calls in
// flight drain for at most DrainTimeout before they are cancelled.
func (d *driver) run(ctx context.Context, host string) (round, error) {
	c := d.c
	conns := make([]*grpc.ClientConn, c.Connections)
	for i := range conns {
		cc, err := grpc.NewClient(host, grpc.WithTransportCredentials(d.creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))
		if err != nil {
			return round{}, fmt.Errorf("target %q: %w", host, err)
		}
		defer cc.Close()
		conns[i] = cc
	}
	st := &roundState{epoch: time.Now(), stop: make(chan struct{}), finish: c.Mode() == ModeSaturating || c.Mode() == ModeInterval}
	st.calls.Store(int64(c.Total))
	callCtx, cancelCalls := context.WithCancel(context.Background())
	defer cancelCalls()
	workers := make([]*worker, c.Concurrency)
	sinks := newSinks(len(workers), c.Mode() == ModePaced)
	var wg sync.WaitGroup
	for i := range workers {
		w := newWorker(d, st, i, conns[i%len(conns)], sinks[i%len(sinks)])
		workers[i] = w
		wg.Go(func() { w.loop(callCtx) })
	}
	done := make(chan struct{})
	var stopper sync.WaitGroup
	stopper.Go(func() { d.stopRound(ctx, st, done, cancelCalls) })
	wg.Wait()
	elapsed := time.Since(st.epoch)
	close(done)
	stopper.Wait()
	r := merge(workers, sinks)
	r.elapsed = elapsed
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	return r, nil
}

// stopRound stops the round's sending when its time is up (or ctx is
// done), then cancels the calls still open DrainTimeout later. It returns
// when the workers are done.
func (d *driver) stopRound(ctx context.Context, st *roundState, done <-chan struct{}, cancelCalls context.CancelFunc) {
	var limit <-chan time.Time
	if bound := d.roundBound(); bound > 0 {
		t := time.NewTimer(bound)
		defer t.Stop()
		limit = t.C
	}
	select {
	case <-done:
		return
	case <-limit:
	case <-ctx.Done():
	}
	st.stopped.Store(true)
	close(st.stop)
	drain := time.NewTimer(d.c.DrainTimeout)
	defer drain.Stop()
	select {
	case <-done:
	case <-drain.C:
		cancelCalls()
	case <-ctx.Done():
		cancelCalls()
	}
}

// roundBound is how long a round sends: -z, or -x for an -n round (0: until
// the calls are made).
func (d *driver) roundBound() time.Duration {
	if d.c.Total > 0 {
		return d.c.MaxDuration
	}
	return d.c.Duration
}

// worker is one stream slot: its calls run one after another, so its
// figures are written by one call's sender (the worker's goroutine) and
// that call's receiver at a time, and read by merge once every worker has
// returned. hist and fromSend buffer the receiver's samples, lag the
// sender's; each flushes into the worker's sink. Padded apart so workers do
// not share cache lines.
type worker struct {
	_     [cacheLine]byte
	d     *driver
	st    *roundState
	id    string
	cc    *grpc.ClientConn
	next  int64 // paced: the next message's scheduled time (ns since epoch)
	free  int64 // paced: until when the driver's own timer held sends back
	timer *time.Timer

	sent, responses, calls, behind int64
	hist, fromSend, lag            *samples
	errors                         map[string]int64
	_                              [cacheLine]byte
}

func newWorker(d *driver, st *roundState, i int, cc *grpc.ClientConn, s *sink) *worker {
	w := &worker{d: d, st: st, id: fmt.Sprintf("g%dc%d", i, i%int(d.c.Connections)), cc: cc,
		hist: newSamples(s, s.hist), fromSend: newSamples(s, s.fromSend), lag: newSamples(s, s.lag)}
	if d.c.Mode() == ModePaced {
		interval := float64(time.Second) / d.c.Rate
		// phases spread over one interval, so the streams do not send in step
		w.next = int64(interval * float64(i) / float64(d.c.Concurrency))
	}
	return w
}

// loop makes calls until the round stops or -n's calls are claimed.
func (w *worker) loop(ctx context.Context) {
	defer func() {
		if w.timer != nil {
			w.timer.Stop()
		}
		w.lag.flush()
	}()
	for !w.st.stopped.Load() && ctx.Err() == nil {
		if w.d.c.Total > 0 && w.st.calls.Add(-1) < 0 {
			return
		}
		w.call(ctx, w.st.reqNum.Add(1)-1)
	}
}

// fail counts a call's error by its status code.
func (w *worker) fail(err error) {
	if w.errors == nil {
		w.errors = map[string]int64{}
	}
	w.errors[errorKey(err)]++
}

// merge sums the workers and the sinks into one round.
func merge(ws []*worker, sinks []*sink) round {
	r := round{hist: bench.NewHistogram()}
	for _, w := range ws {
		r.messages += w.sent
		r.responses += w.responses
		r.calls += w.calls
		r.behind += w.behind
		for k, v := range w.errors {
			if r.errors == nil {
				r.errors = map[string]int64{}
			}
			r.errors[k] += v
		}
	}
	for _, s := range sinks {
		r.hist.Merge(s.hist)
		if s.fromSend != nil {
			if r.fromSend == nil {
				r.fromSend, r.lag = bench.NewHistogram(), bench.NewHistogram()
			}
			r.fromSend.Merge(s.fromSend)
			r.lag.Merge(s.lag)
		}
	}
	return r
}

// errCancelledAtDrain marks calls the round cancelled because they had not
// ended DrainTimeout after it stopped sending.
var errCancelledAtDrain = errors.New("cancelled: still open at the drain timeout")
