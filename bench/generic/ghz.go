package generic

import (
	"context"
	"sync"
	"time"

	"github.com/bojand/ghz/runner"

	"github.com/bidikit/bidikit/bench"
)

// ghzOptions are ghz's runner options for the run c describes, for `--vs
// ghz`: the same method, descriptors, data, metadata, concurrency,
// connections, messages per call and TLS. Rounds end by stopping new calls
// and waiting for those in flight (duration stop action "wait"), as
// bidikit's saturating rounds do, so every counted call sent all its
// messages. An -n round is ghz's -n.
func ghzOptions(c Config) []runner.Option {
	o := []runner.Option{
		runner.WithConcurrency(c.Concurrency),
		runner.WithConnections(c.Connections),
		runner.WithDataFromJSON(c.Data),
		runner.WithDialTimeout(c.DialTimeout),
		runner.WithStreamInterval(c.StreamInterval),
		runner.WithStreamCallCount(c.StreamCallCount),
		runner.WithStreamDynamicMessages(c.StreamDynamicMessages),
	}
	if c.Total > 0 {
		o = append(o, runner.WithTotalRequests(c.Total))
	} else {
		o = append(o, runner.WithRunDuration(c.Duration), runner.WithDurationStopAction("wait"))
	}
	switch {
	case c.Proto != "":
		o = append(o, runner.WithProtoFile(c.Proto, c.ImportPaths))
	case c.Protoset != "":
		o = append(o, runner.WithProtoset(c.Protoset))
	}
	if c.Metadata != "" {
		o = append(o, runner.WithMetadataFromJSON(c.Metadata))
	}
	if md, err := decodeMetadata([]byte(orEmptyObject(c.Metadata))); c.ReflectMetadata != nil {
		o = append(o, runner.WithReflectionMetadata(c.ReflectMetadata))
	} else if err == nil && len(md) > 0 {
		o = append(o, runner.WithReflectionMetadata(md))
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
// round stops at c.Duration (a -z round) or when ctx is done.
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
		var limit <-chan time.Time
		if c.Total == 0 {
			t := time.NewTimer(c.Duration)
			defer t.Stop()
			limit = t.C
		}
		reason := runner.ReasonTimeout
		select {
		case <-done:
			return
		case <-limit:
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

// runGhz is one round of plain ghz. ghz counts calls, not messages: the
// round's messages are its successful calls times the messages per call
// (CompareRefusal makes sure that is a known number, and the round waits
// for calls in flight, so each sent them all).
func runGhz(ctx context.Context, c Config, host string) (round, error) {
	rep, elapsed, err := execute(ctx, c, host, ghzOptions(c))
	if err != nil {
		return round{}, err
	}
	errs := reportErrors(rep)
	failed := int64(0)
	for _, v := range errs {
		failed += v
	}
	ok := max(int64(rep.Count)-failed, 0)
	r := round{messages: ok * int64(c.StreamCallCount), calls: int64(rep.Count), elapsed: elapsed, errors: errs}
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
