package generic

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/bidikit/bidikit/bench"
)

// ErrLeak marks a run whose leak verdict failed: the result is complete and
// its notes say what stayed open.
var ErrLeak = errors.New("leak check failed")

// Run runs the generic benchmark on c.Target: Resolve and Validate (no
// network), preflight (an unreachable target fails within c.DialTimeout),
// the method's descriptor and the encoded requests, the faults' proxy, the
// channelz baseline when the target serves channelz, c.Rounds rounds of
// bidikit's driver alternating with plain ghz when c.Vs is "ghz", then the
// leak verdict. The Result's Vs holds ghz's figures and the ratio
// (messages/s, ours over ghz's, each summed over its rounds).
func Run(ctx context.Context, c Config) (bench.Result, error) {
	c, err := c.Resolve()
	if err != nil {
		return bench.Result{}, err
	}
	c = Defaults(c)
	if err := c.Validate(); err != nil {
		return bench.Result{}, err
	}
	if c.Target == "" {
		return bench.Result{}, usagef("--target is required for --call (host:port of the server)")
	}
	creds, err := c.TransportCredentials()
	if err != nil {
		return bench.Result{}, usagef("%v", err)
	}
	cc, err := Preflight(ctx, c.Target, creds, c.DialTimeout)
	if err != nil {
		return bench.Result{}, err
	}
	defer cc.Close()
	md, err := resolveMethod(ctx, c, cc)
	if err != nil {
		return bench.Result{}, err
	}
	drv, err := newDriver(c, md, creds)
	if err != nil {
		return bench.Result{}, err
	}
	host, stopFaults, err := StartFaults(ctx, c.Target, c.Faults)
	if err != nil {
		return bench.Result{}, err
	}
	defer stopFaults()

	res := bench.Result{Workload: "generic", Tool: "bidikit-" + string(c.Mode()), Target: c.Target,
		LatencyOf: latencyOf(c), Params: params(c)}
	baseline, lerr := ReadLoad(ctx, cc)
	haveChannelz := lerr == nil

	ours, theirs, err := rounds(ctx, c, drv, host, &res)
	if err != nil {
		return res, err
	}
	fill(&res, ours)
	describe(&res, c, ours)
	if c.Vs == "ghz" {
		other := bench.Result{Tool: "ghz", LatencyOf: "per call (ghz reports no per-message latency)"}
		fill(&other, theirs)
		if other.MessagesPerSec <= 0 {
			return res, fmt.Errorf("--vs ghz: ghz completed no call in %d rounds (errors %v): there is no ratio to give", len(theirs), other.Errors)
		}
		res.SetVs(other)
		if len(other.Errors) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("ghz's calls failed (%v): its messages/s counts only calls that succeeded", other.Errors))
		}
	}
	if len(c.Faults) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("through toxiproxy with faults %v", c.Faults))
	}
	if !haveChannelz {
		res.Notes = append(res.Notes, "leak check skipped: "+lerr.Error())
		return res, nil
	}
	stopFaults() // the proxy's own connections are not the target's leak
	ok, msg, err := LeakVerdict(ctx, cc, baseline, c.LeakSettle)
	if err != nil {
		res.Notes = append(res.Notes, "leak check failed to run: "+err.Error())
		return res, nil
	}
	res.Notes = append(res.Notes, msg)
	if !ok {
		return res, fmt.Errorf("%w: %s", ErrLeak, msg)
	}
	return res, nil
}

// rounds runs c.Rounds rounds of the driver, each followed by one of ghz
// when c.Vs is "ghz" (the order swaps every round, so neither tool always
// runs first on a machine whose load drifts), and records each round's
// pair of rates in res.Rounds.
func rounds(ctx context.Context, c Config, drv *driver, host string, res *bench.Result) (ours, theirs []round, err error) {
	for i := 0; i < c.Rounds; i++ {
		runOurs := func() error {
			r, err := drv.run(ctx, host)
			if err != nil {
				return fmt.Errorf("round %d (bidikit): %w", i+1, err)
			}
			ours = append(ours, r)
			return nil
		}
		if c.Vs != "ghz" {
			if err := runOurs(); err != nil {
				return nil, nil, err
			}
			continue
		}
		runTheirs := func() error {
			r, err := runGhz(ctx, c, host)
			if err != nil {
				return fmt.Errorf("round %d (ghz): %w", i+1, err)
			}
			theirs = append(theirs, r)
			return nil
		}
		first, second := runOurs, runTheirs
		if i%2 == 1 {
			first, second = runTheirs, runOurs
		}
		if err := first(); err != nil {
			return nil, nil, err
		}
		if err := second(); err != nil {
			return nil, nil, err
		}
		res.Rounds = append(res.Rounds, bench.Round{Ours: rate(ours[i]), Theirs: rate(theirs[i])})
	}
	return ours, theirs, nil
}

func rate(r round) float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.messages) / r.elapsed.Seconds()
}

// fill sums rounds into res: messages over total time, merged histograms
// (ours) or the median round's per-call latency (ghz).
func fill(res *bench.Result, rs []round) {
	var total time.Duration
	h := bench.NewHistogram()
	for _, r := range rs {
		res.Messages += r.messages
		total += r.elapsed
		if r.hist != nil {
			h.Merge(r.hist)
		}
		for k, v := range r.errors {
			if res.Errors == nil {
				res.Errors = map[string]int64{}
			}
			res.Errors[k] += v
		}
	}
	res.DurationS = total.Seconds()
	if h.TotalCount() > 0 {
		res.LatencyMS = bench.Summarize(h)
	} else if len(rs) > 0 {
		res.LatencyMS = rs[len(rs)/2].latency
	}
	res.Finish()
}

// describe adds the driver's own figures: calls and responses, and in
// paced mode how well the schedule was kept (the offered rate, messages
// sent behind schedule, how late timers woke, latency from the actual
// send), with notes when the figures need a caveat.
func describe(res *bench.Result, c Config, rs []round) {
	var calls, responses, behind int64
	fromSend, lag := bench.NewHistogram(), bench.NewHistogram()
	for _, r := range rs {
		calls += r.calls
		responses += r.responses
		behind += r.behind
		if r.fromSend != nil {
			fromSend.Merge(r.fromSend)
			lag.Merge(r.lag)
		}
	}
	res.Extra = map[string]float64{"calls": float64(calls), "responses": float64(responses)}
	if c.Mode() == ModeSaturating {
		res.Notes = append(res.Notes, "saturating mode: a throughput figure; its latency is how long messages queued behind their own stream (--rate R for open-loop latency, --window W for closed loop)")
	}
	if responses != res.Messages {
		res.Notes = append(res.Notes, fmt.Sprintf("the method answered %d of %d messages: latency pairs responses with requests in order, one each (an echo), so it is meaningful only for such methods", responses, res.Messages))
	}
	if c.Mode() != ModePaced {
		return
	}
	offered := c.Rate * float64(c.Concurrency)
	res.Extra["offered_messages_per_sec"] = offered
	res.Extra["sent_behind_schedule"] = float64(behind)
	if fromSend.TotalCount() > 0 {
		s := bench.Summarize(fromSend)
		res.Extra["from_send_p50_ms"], res.Extra["from_send_p99_ms"] = s.P50, s.P99
	}
	if lag.TotalCount() > 0 {
		s := bench.Summarize(lag)
		res.Extra["timer_late_p50_ms"], res.Extra["timer_late_p99_ms"] = s.P50, s.P99
	}
	if res.MessagesPerSec < 0.95*offered {
		res.Notes = append(res.Notes, fmt.Sprintf("paced at %.0f messages/s in all but sent %.0f/s: the server or the driver could not keep up, and the latency counts every message's wait behind its schedule", offered, res.MessagesPerSec))
	}
}

func params(c Config) map[string]string {
	p := map[string]string{
		"call": c.Call, "mode": string(c.Mode()), "concurrency": strconv.FormatUint(uint64(c.Concurrency), 10),
		"connections":       strconv.FormatUint(uint64(c.Connections), 10),
		"stream_call_count": strconv.FormatUint(uint64(c.StreamCallCount), 10), "rounds": strconv.Itoa(c.Rounds),
		"data_bytes": strconv.Itoa(len(c.Data)),
	}
	if c.Total > 0 {
		p["total_calls"] = strconv.FormatUint(uint64(c.Total), 10)
		p["total_messages"] = strconv.FormatUint(uint64(c.Total)*uint64(c.StreamCallCount), 10)
		if c.MaxDuration > 0 {
			p["max_duration"] = c.MaxDuration.String()
		}
	} else {
		p["duration"] = c.Duration.String()
	}
	switch c.Mode() {
	case ModePaced:
		p["rate_per_stream"] = strconv.FormatFloat(c.Rate, 'g', -1, 64)
	case ModeWindowed:
		p["window"] = strconv.FormatUint(uint64(c.Window), 10)
	case ModeInterval:
		p["stream_interval"] = c.StreamInterval.String()
	}
	if c.Vs != "" {
		p["vs"] = c.Vs
	}
	if c.Name != "" {
		p["name"] = c.Name
	}
	keys := make([]string, 0, len(c.Tags))
	for k := range c.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p["tag."+k] = c.Tags[k]
	}
	return p
}
