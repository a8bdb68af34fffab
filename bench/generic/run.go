package generic

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/bidikit/bidikit/bench"
)

// round is one tool's figures for one round.
type round struct {
	messages int64
	elapsed  time.Duration
	hist     *hdrhistogram.Histogram // per-message latency (ours); nil for ghz
	latency  bench.Latency           // ghz: per call
	errors   map[string]int64
}

// ErrLeak marks a run whose leak verdict failed: the result is complete and
// its notes say what stayed open.
var ErrLeak = errors.New("leak check failed")

// Run runs the generic benchmark on c.Target: preflight (an unreachable
// target fails within c.DialTimeout), the faults' proxy, the channelz
// baseline when the target serves channelz, c.Rounds rounds of bidikit's
// hooked ghz run alternating with plain ghz when c.Vs is "ghz", then the
// leak verdict. The Result's Vs holds ghz's figures and the ratio
// (messages/s, ours over ghz's, each summed over its rounds).
func Run(ctx context.Context, c Config) (bench.Result, error) {
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
	host, stopFaults, err := StartFaults(ctx, c.Target, c.Faults)
	if err != nil {
		return bench.Result{}, err
	}
	defer stopFaults()

	res := bench.Result{Workload: "generic", Tool: "bidikit-ghz", Target: c.Target, LatencyOf: "per-message send-to-response",
		Params: params(c)}
	baseline, lerr := ReadLoad(ctx, cc)
	haveChannelz := lerr == nil

	hooked, err := prepareHooked(ctx, c, cc, creds)
	if err != nil {
		return res, err
	}
	var ours, theirs []round
	for i := 0; i < c.Rounds; i++ {
		r, err := hooked.run(ctx, host)
		if err != nil {
			return res, fmt.Errorf("round %d (bidikit): %w", i+1, err)
		}
		ours = append(ours, r)
		if c.Vs == "ghz" {
			r, err := runPlain(ctx, c, host)
			if err != nil {
				return res, fmt.Errorf("round %d (ghz): %w", i+1, err)
			}
			theirs = append(theirs, r)
			res.Rounds = append(res.Rounds, bench.Round{Ours: rate(ours[i]), Theirs: rate(r)})
		}
	}
	fill(&res, ours)
	if c.Vs == "ghz" {
		other := bench.Result{Tool: "ghz", LatencyOf: "per call (ghz reports no per-message latency)"}
		fill(&other, theirs)
		res.SetVs(other)
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

func params(c Config) map[string]string {
	p := map[string]string{
		"call": c.Call, "concurrency": strconv.FormatUint(uint64(c.Concurrency), 10),
		"connections": strconv.FormatUint(uint64(c.Connections), 10), "duration": c.Duration.String(),
		"stream_call_count": strconv.FormatUint(uint64(c.StreamCallCount), 10), "rounds": strconv.Itoa(c.Rounds),
		"data_bytes": strconv.Itoa(len(c.Data)),
	}
	if c.StreamInterval > 0 {
		p["stream_interval"] = c.StreamInterval.String()
	}
	if c.Vs != "" {
		p["vs"] = c.Vs
	}
	return p
}

// keep imports used by both build variants.
var (
	_ *grpc.ClientConn
	_ credentials.TransportCredentials
)
