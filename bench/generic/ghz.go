package generic

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// run is one hooked round: every stream gets a msgTimer.
func (h *hookedRun) run(ctx context.Context, host string) (round, error) {
	hist := bench.NewShardedHist()
	var sent atomic.Int64
	var streams atomic.Int64
	opts := append(baseOptions(h.c), runner.WithStreamInterceptorProviderFunc(func(cd *runner.CallData) runner.StreamInterceptor {
		return &msgTimer{h: h, hist: hist, shard: int(streams.Add(1)), sent: &sent}
	}))
	rep, elapsed, err := execute(ctx, h.c, host, opts)
	if err != nil {
		return round{}, err
	}
	return round{messages: sent.Load(), elapsed: elapsed, hist: hist.Merged(), errors: reportErrors(rep)}, nil
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

// msgTimer is one stream's per-message latency hook. ghz calls Send from
// the stream's send goroutine and Recv from its receive goroutine; mu
// guards the queue of send times. Responses are matched to requests in
// order, one response per request (FullDuplexCall-style echo).
type msgTimer struct {
	h     *hookedRun
	hist  *bench.ShardedHist
	shard int
	sent  *atomic.Int64

	mu    sync.Mutex
	times []int64 // send times not yet answered, from head
	head  int
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
	now := time.Now().UnixNano()
	t.mu.Lock()
	if t.head > 1024 && t.head*2 > len(t.times) { // compact the answered prefix
		t.times = append(t.times[:0], t.times[t.head:]...)
		t.head = 0
	}
	t.times = append(t.times, now)
	t.mu.Unlock()
	t.sent.Add(1)
	return msg, nil
}

func (t *msgTimer) Recv(m *dynamic.Message, err error) error {
	if err != nil || m == nil {
		return nil
	}
	now := time.Now().UnixNano()
	t.mu.Lock()
	if t.head >= len(t.times) {
		t.mu.Unlock()
		return nil // more responses than requests: not an echo method
	}
	at := t.times[t.head]
	t.head++
	if t.head == len(t.times) {
		t.times, t.head = t.times[:0], 0
	}
	t.mu.Unlock()
	t.hist.Record(t.shard, time.Duration(now-at))
	return nil
}
