package generic

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/bojand/ghz/protodesc"
	"github.com/bojand/ghz/runner"
	"github.com/jhump/protoreflect/desc"
	"github.com/jhump/protoreflect/dynamic"
	"github.com/jhump/protoreflect/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/bidikit/bidikit/bench"
)

// hookedRun is bidikit's ghz run of one method: the method's descriptor,
// the request message, and ghz's options. Built once, run per round.
type hookedRun struct {
	c        Config
	mtd      *desc.MethodDescriptor
	msg      *dynamic.Message // shared read-only when the data has no template
	template bool
}

// prepareHooked resolves the method (proto file, protoset or reflection over
// cc) and decodes the request message.
func prepareHooked(ctx context.Context, c Config, cc *grpc.ClientConn, _ credentials.TransportCredentials) (*hookedRun, error) {
	var (
		mtd *desc.MethodDescriptor
		err error
	)
	switch {
	case c.Proto != "":
		mtd, err = protodesc.GetMethodDescFromProto(c.Call, c.Proto, c.ImportPaths)
	case c.Protoset != "":
		mtd, err = protodesc.GetMethodDescFromProtoSet(c.Call, c.Protoset)
	default:
		rctx, cancel := context.WithTimeout(ctx, c.DialTimeout)
		defer cancel()
		if md := c.MetadataMap(); md != nil {
			rctx = metadata.NewOutgoingContext(rctx, metadata.New(md))
		}
		rc := grpcreflect.NewClientAuto(rctx, cc)
		defer rc.Reset()
		mtd, err = protodesc.GetMethodDescFromReflect(c.Call, rc)
		if err != nil {
			err = fmt.Errorf("server reflection on %s (use --proto or --protoset when the server has none): %w", c.Target, err)
		}
	}
	if err != nil {
		return nil, usagef("--call %s: %v", c.Call, err)
	}
	if !mtd.IsClientStreaming() || !mtd.IsServerStreaming() {
		return nil, usagef("--call %s is not a bidirectional-streaming method", c.Call)
	}
	h := &hookedRun{c: c, mtd: mtd, template: strings.Contains(c.Data, "{{")}
	if !h.template {
		m := dynamic.NewMessage(mtd.GetInputType())
		if err := m.UnmarshalJSON([]byte(c.Data)); err != nil {
			return nil, usagef("--data does not fit %s: %v", mtd.GetInputType().GetFullyQualifiedName(), err)
		}
		h.msg = m
	}
	return h, nil
}

// baseOptions are ghz's options shared by the hooked and the plain run.
// Rounds end by stopping new calls and waiting for the calls in flight
// (duration stop action "wait"), so every counted call sent all its
// messages; without a per-call message count each call lasts the round.
func baseOptions(c Config) []runner.Option {
	o := []runner.Option{
		runner.WithConcurrency(c.Concurrency),
		runner.WithConnections(c.Connections),
		runner.WithRunDuration(c.Duration),
		runner.WithDurationStopAction("wait"),
		runner.WithDataFromJSON(c.Data),
		runner.WithDialTimeout(c.DialTimeout),
		runner.WithStreamInterval(c.StreamInterval),
		runner.WithStreamCallCount(c.StreamCallCount),
	}
	if c.StreamCallCount == 0 {
		o = append(o, runner.WithStreamCallDuration(c.Duration))
	}
	switch {
	case c.Proto != "":
		o = append(o, runner.WithProtoFile(c.Proto, c.ImportPaths))
	case c.Protoset != "":
		o = append(o, runner.WithProtoset(c.Protoset))
	}
	if md := c.MetadataMap(); md != nil {
		o = append(o, runner.WithMetadata(md), runner.WithReflectionMetadata(md))
	}
	if c.Insecure {
		o = append(o, runner.WithInsecure(true))
	} else {
		if c.CACert != "" {
			o = append(o, runner.WithRootCertificate(c.CACert))
		}
		if c.Cert != "" {
			o = append(o, runner.WithCertificate(c.Cert, c.Key))
		}
		if c.ServerName != "" {
			o = append(o, runner.WithServerNameOverride(c.ServerName))
		}
		if c.SkipVerify {
			o = append(o, runner.WithSkipTLSVerify(true))
		}
	}
	return o
}

// execute runs ghz's requester for one round. It replaces runner.Run, which
// leaves a signal-handler goroutine behind and cannot be cancelled: the
// round stops at c.Duration or when ctx is done.
func execute(ctx context.Context, c Config, host string, opts []runner.Option) (*runner.Report, time.Duration, error) {
	cfg, err := runner.NewConfig(c.Call, host, opts...)
	if err != nil {
		return nil, 0, err
	}
	reqr, err := runner.NewRequester(cfg)
	if err != nil {
		return nil, 0, err
	}
	done := make(chan struct{})
	var stopper sync.WaitGroup
	stopper.Go(func() {
		t := time.NewTimer(c.Duration)
		defer t.Stop()
		reason := runner.ReasonTimeout
		select {
		case <-done:
			return
		case <-t.C:
		case <-ctx.Done():
			reason = runner.ReasonCancel
		}
		defer func() { _ = recover() }() // Run already returned and closed its stop channel
		reqr.Stop(reason)
	})
	began := time.Now()
	rep, err := reqr.Run()
	elapsed := time.Since(began)
	close(done)
	stopper.Wait()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return rep, elapsed, err
}

// run is one hooked round: every call gets a msgTimer recording into its
// worker's recorder; the recorders are summed once ghz has returned.
func (h *hookedRun) run(ctx context.Context, host string) (round, error) {
	rec := newRoundRecorder()
	opts := append(baseOptions(h.c), runner.WithStreamInterceptorProviderFunc(func(cd *runner.CallData) runner.StreamInterceptor {
		return rec.timer(h, cd.WorkerID)
	}))
	rep, elapsed, err := execute(ctx, h.c, host, opts)
	if err != nil {
		return round{}, err
	}
	sent, hist := rec.merged()
	return round{messages: sent, elapsed: elapsed, hist: hist, errors: reportErrors(rep)}, nil
}

// runPlain is one round of plain ghz: no hooks. Its message count is the
// successful calls times the messages per call (the round waits for calls in
// flight, so each sent them all); without a per-call count, ghz cannot say
// how many messages it sent and the count is 0.
func runPlain(ctx context.Context, c Config, host string) (round, error) {
	rep, elapsed, err := execute(ctx, c, host, baseOptions(c))
	if err != nil {
		return round{}, err
	}
	errs := reportErrors(rep)
	failed := int64(0)
	for _, v := range errs {
		failed += v
	}
	ok := max(int64(rep.Count)-failed, 0)
	r := round{messages: ok * int64(c.StreamCallCount), elapsed: elapsed, errors: errs}
	l := bench.Latency{Max: ms(rep.Slowest), Count: int64(rep.Count)}
	for _, d := range rep.LatencyDistribution {
		switch d.Percentage {
		case 50:
			l.P50 = ms(d.Latency)
		case 90:
			l.P90 = ms(d.Latency)
		case 99:
			l.P99 = ms(d.Latency)
		}
	}
	r.latency = l
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func reportErrors(rep *runner.Report) map[string]int64 {
	if rep == nil || len(rep.ErrorDist) == 0 {
		return nil
	}
	out := map[string]int64{}
	for k, v := range rep.ErrorDist {
		out[k] = int64(v)
	}
	return out
}

// roundRecorder is one hooked round's per-message bookkeeping, kept per
// ghz worker so that nothing is shared between streams per message: no
// lock, no shared counter, no shared histogram on the per-message path.
// ghz runs each worker's calls one after another (baseOptions never turns
// on its async mode), and a call's send and receive goroutines have both
// ended before its worker starts the next call; so a worker's histogram is
// owned by the receive goroutine of the worker's current call, and the
// worker's message count is brought up to date on the worker's goroutine
// when its next call starts. requester.Run returns only after every worker
// has stopped, which orders all of them before merged.
type roundRecorder struct {
	epoch time.Time // send and receive times are monotonic offsets from it

	mu      sync.Mutex // guards workers; taken once per call
	workers map[string]*workerRec
}

// workerRec is one ghz worker's figures: hist its calls' latencies, sent
// the messages of its finished calls, last its current call.
type workerRec struct {
	_    [cacheLine]byte // the histogram's counters off other workers' cache lines
	hist hdrhistogram.Histogram
	sent int64
	last *msgTimer
	_    [cacheLine]byte
}

const cacheLine = 64

func newRoundRecorder() *roundRecorder {
	return &roundRecorder{epoch: time.Now(), workers: map[string]*workerRec{}}
}

// timer returns the interceptor of a new call on worker id. Called by ghz
// on the worker's goroutine, once the worker's previous call has ended.
func (r *roundRecorder) timer(h *hookedRun, worker string) *msgTimer {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[worker]
	if w == nil {
		w = &workerRec{hist: *bench.NewHistogram()}
		r.workers[worker] = w
	}
	if w.last != nil {
		w.sent += w.last.times.wrote
	}
	t := &msgTimer{h: h, epoch: r.epoch, hist: &w.hist}
	w.last = t
	return t
}

// merged sums the workers: messages sent and one latency histogram. Call
// it after ghz's Run has returned.
func (r *roundRecorder) merged() (int64, *hdrhistogram.Histogram) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := bench.NewHistogram()
	var sent int64
	for _, w := range r.workers {
		sent += w.sent
		if w.last != nil {
			sent += w.last.times.wrote
		}
		h.Merge(&w.hist)
	}
	return sent, h
}

// msgTimer is one call's per-message latency hook. ghz calls Send from the
// call's send goroutine and Recv from its receive goroutine; the send times
// pass between them through times (single producer, single consumer), and
// times.wrote is the number of messages the call sent. Responses are
// matched to requests in order, one response per request
// (FullDuplexCall-style echo).
type msgTimer struct {
	// read-only after creation
	h     *hookedRun
	epoch time.Time
	hist  *hdrhistogram.Histogram // written only by the receive goroutine
	times sendTimes
}

func (t *msgTimer) Send(cd *runner.CallData) (*dynamic.Message, error) {
	msg := t.h.msg
	if t.h.template {
		b, err := cd.ExecuteData(t.h.c.Data)
		if err != nil {
			return nil, err
		}
		m := dynamic.NewMessage(t.h.mtd.GetInputType())
		if err := m.UnmarshalJSON(b); err != nil {
			return nil, err
		}
		msg = m
	}
	t.times.push(int64(time.Since(t.epoch))) // monotonic clock only: one clock read
	return msg, nil
}

func (t *msgTimer) Recv(m *dynamic.Message, err error) error {
	if err != nil || m == nil {
		return nil
	}
	at, ok := t.times.pop()
	if !ok {
		return nil // more responses than requests: not an echo method
	}
	us := max((int64(time.Since(t.epoch))-at)/1e3, 1)
	_ = t.hist.RecordValue(min(us, t.hist.HighestTrackableValue()))
	return nil
}

// sendTimes is an unbounded FIFO of int64 for exactly one producer and one
// consumer goroutine, without locks: the producer fills fixed-size segments
// and publishes how many values it has written with one atomic store; the
// consumer reads only values below the published count, which orders the
// writes (of the value and of a segment's next link) before its reads.
// A segment no longer referenced by either side is garbage. The two sides'
// fields sit on separate cache lines, and off the read-only fields before.
type sendTimes struct {
	_ [cacheLine]byte
	// producer side; published is read by the consumer
	tail      *timeSeg
	wrote     int64
	published atomic.Int64
	_         [cacheLine - 24]byte
	// consumer side
	head *timeSeg
	read int64
	_    [cacheLine - 16]byte
}

const timeSegLen = 128

type timeSeg struct {
	v    [timeSegLen]int64
	next *timeSeg
}

// push appends v. Producer only.
func (q *sendTimes) push(v int64) {
	i := q.wrote % timeSegLen
	switch {
	case q.tail == nil:
		q.tail = &timeSeg{}
		q.head = q.tail // published below, before the consumer looks at head
	case i == 0:
		s := &timeSeg{}
		q.tail.next = s
		q.tail = s
	}
	q.tail.v[i] = v
	q.wrote++
	q.published.Store(q.wrote)
}

// pop removes the oldest value; false when none is published. Consumer
// only.
func (q *sendTimes) pop() (int64, bool) {
	if q.read >= q.published.Load() {
		return 0, false
	}
	i := q.read % timeSegLen
	if i == 0 && q.read > 0 {
		q.head = q.head.next
	}
	v := q.head.v[i]
	q.read++
	return v, true
}
