package shard

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/judge"
	"github.com/bidikit/bidikit/harness/metrics"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
)

// Scenario is one scenario merged over all shards.
type Scenario struct {
	// Header is shard 1's header (Index 0): the scenario's identity.
	Header Header
	// Result is the merged result, as `bidikit run` would report it.
	Result result.Scenario
	// Histograms are the shards' histograms merged (exactly).
	Histograms metrics.Histograms
	// Events is how many events the checks observed over all shards.
	Events int64
}

// Merge reads the raw files of every shard of one run (one file per shard,
// in any order) and merges each scenario:
//
//   - latency percentiles come from the shards' HDR histograms merged, which
//     is exact: the merged histogram has the counts one histogram fed every
//     shard's samples would have;
//   - counters, errors and the timeline come from the union of the events;
//   - every check is rebuilt from the scenario embedded in the files and
//     fed the union of the shards' events: each shard's in the order its
//     checkers saw them, interleaved across shards by time (each shard's
//     At shifted by its start's wall-clock offset from the earliest shard);
//   - checks that read the server themselves (check.Starter, e.g. leaks)
//     cannot be re-run later: each shard's verdict is kept and the worst
//     wins (fail, then not-measurable, then pass), evidence labelled by shard;
//   - checks that ask the target's health (fairness, status-codes) are
//     answered from the shards' recorded health: healthy only if every shard
//     saw it healthy.
//
// Errors are about the inputs: unreadable, corrupt or truncated files, and
// files that are not the shards of one run (different scenarios, seeds or
// shard counts, a shard given twice or missing). Failed checks are not
// errors. Memory is bounded by the checkers' own state: events stream
// through one batch per shard at a time.
func Merge(ctx context.Context, paths ...string) ([]Scenario, error) {
	if len(paths) == 0 {
		return nil, errors.New("no raw result files given: name every shard's --raw-out file")
	}
	readers := make([]*Reader, 0, len(paths))
	defer func() {
		for _, r := range readers {
			_ = r.Close()
		}
	}()
	for _, p := range paths {
		r, err := Open(p)
		if err != nil {
			return nil, err
		}
		readers = append(readers, r)
	}
	hs := make([]*Header, len(readers))
	for i, r := range readers {
		h, err := r.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s holds no scenario (did the shard run at all?)", r.Name())
		}
		if err != nil {
			return nil, err
		}
		hs[i] = h
	}
	if err := checkSet(readers, hs); err != nil {
		return nil, err
	}
	// Shard order from here on: readers[i] is shard i.
	sort.SliceStable(readers, func(a, b int) bool { return hs[a].Index < hs[b].Index })
	sort.SliceStable(hs, func(a, b int) bool { return hs[a].Index < hs[b].Index })

	var out []Scenario
	for section := 0; ; section++ {
		if section > 0 {
			ended := 0
			for i, r := range readers {
				h, err := r.Next()
				switch {
				case err == io.EOF:
					ended++
				case err != nil:
					return nil, err
				default:
					if h.Index != i || h.Count != len(readers) {
						return nil, fmt.Errorf("%s: corrupt raw results: scenario %q is shard %s, the file's first scenario shard %d/%d",
							r.Name(), h.Name, h.Label(), i+1, len(readers))
					}
					hs[i] = h
				}
			}
			if ended == len(readers) {
				return out, nil
			}
			if ended > 0 {
				return nil, fmt.Errorf("the shards ran different numbers of scenarios (%d of %d files end after %d): merge the files of one run",
					ended, len(readers), section)
			}
		}
		if err := checkSame(readers, hs); err != nil {
			return nil, err
		}
		sc, err := mergeSection(ctx, readers, hs)
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
}

// Report is the merged run as `bidikit run` would report it.
func Report(ss []Scenario) *result.Run {
	run := &result.Run{Passed: true}
	for i, s := range ss {
		if i == 0 {
			run.Seed, run.Target, run.StartedAt = s.Header.Seed, s.Header.Target, s.Header.StartedAt.UTC()
		}
		if !s.Result.Passed {
			run.Passed = false
		}
		run.Scenarios = append(run.Scenarios, s.Result)
	}
	return run
}

func label(r *Reader, h *Header) string { return fmt.Sprintf("shard %s (%s)", h.Label(), r.Name()) }

// checkSet checks that the files are shards 1..n of one n, each once.
func checkSet(rs []*Reader, hs []*Header) error {
	n := hs[0].Count
	byIndex := map[int]int{}
	for i, h := range hs {
		if h.Count != n {
			return fmt.Errorf("%s and %s: different shard counts; every shard of one run is i/n with the same n", label(rs[0], hs[0]), label(rs[i], h))
		}
		if h.Index < 0 || h.Index >= h.Count {
			return fmt.Errorf("%s: corrupt raw results: shard index %d of %d", rs[i].Name(), h.Index, h.Count)
		}
		if j, dup := byIndex[h.Index]; dup {
			return fmt.Errorf("shard %s given twice: %s and %s", h.Label(), rs[j].Name(), rs[i].Name())
		}
		byIndex[h.Index] = i
	}
	var missing []string
	for k := range n {
		if _, ok := byIndex[k]; !ok {
			missing = append(missing, fmt.Sprintf("%d/%d", k+1, n))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing shard %s: a merge needs the raw file of every shard of the run (got %d of %d)",
			strings.Join(missing, ", "), len(hs), n)
	}
	return nil
}

// checkSame checks that every shard ran the same scenario with the same seed.
func checkSame(rs []*Reader, hs []*Header) error {
	a := hs[0]
	for i, b := range hs[1:] {
		r := rs[i+1]
		switch {
		case a.Name != b.Name || a.Service != b.Service || !bytes.Equal(a.Scenario, b.Scenario):
			return fmt.Errorf("%s ran scenario %q (%s) but %s ran %q (%s): the shards of one run run the same scenario files",
				label(rs[0], a), a.Name, a.File, label(r, b), b.Name, b.File)
		case a.Seed != b.Seed:
			return fmt.Errorf("%s ran scenario %q with seed %d but %s with seed %d: the shards of one run use the same seed",
				label(rs[0], a), a.Name, a.Seed, label(r, b), b.Seed)
		}
	}
	return nil
}

// cursor is one shard's position in the interleaved event stream.
type cursor struct {
	shard  int
	offset time.Duration
	e      *event.Event
}

// byTime orders cursors by their event's shifted time, then shard.
type byTime []*cursor

func (q byTime) Len() int { return len(q) }
func (q byTime) Less(i, j int) bool {
	if q[i].e.At != q[j].e.At {
		return q[i].e.At < q[j].e.At
	}
	return q[i].shard < q[j].shard
}
func (q byTime) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *byTime) Push(x any)   { *q = append(*q, x.(*cursor)) }
func (q *byTime) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}

// mergeSection merges one scenario; readers[i] is shard i, positioned after
// the scenario's header hs[i].
func mergeSection(ctx context.Context, rs []*Reader, hs []*Header) (Scenario, error) {
	first := hs[0]
	out := Scenario{Header: *first}
	s, err := scenario.Parse(first.File, first.Scenario)
	if err != nil {
		return out, fmt.Errorf("re-reading scenario %q embedded in %s: %w", first.Name, rs[0].Name(), err)
	}
	s.Seed = first.Seed
	j, err := judge.New(s, scenario.NewPlan(s), nil)
	if err != nil {
		return out, err
	}

	offsets := align(hs, &out.Header)
	if err := replay(ctx, rs, offsets, j, &out); err != nil {
		return out, err
	}

	ts := make([]*Trailer, len(rs))
	complete := true
	var end time.Duration
	for i, r := range rs {
		t := r.Trailer()
		ts[i] = t
		if t.Histograms == nil {
			complete = false
		} else if err := out.Histograms.Merge(*t.Histograms); err != nil {
			return out, fmt.Errorf("%s: %w", r.Name(), err)
		}
		end = max(end, offsets[i]+time.Duration(t.Result.DurationS*float64(time.Second)))
	}

	res := result.Scenario{Name: s.Name, File: first.File, Service: s.Service, Seed: s.Seed}
	j.Finish(&res, end)
	if complete {
		if err := applyHistograms(&res, &out.Histograms); err != nil {
			return out, fmt.Errorf("scenario %q: the shards' raw files disagree with themselves: %w", s.Name, err)
		}
	}
	var failures, interrupted []string
	for i, t := range ts {
		for k, v := range t.Result.Errors {
			if !metrics.FromEvents(k) { // the replay counted the others
				res.Errors[k] += v
			}
		}
		if t.Result.Failure != "" {
			failures = append(failures, fmt.Sprintf("shard %s: %s", hs[i].Label(), t.Result.Failure))
		}
		if t.Result.Interrupted != "" {
			interrupted = append(interrupted, fmt.Sprintf("shard %s: %s", hs[i].Label(), t.Result.Interrupted))
		}
	}
	res.Failure = strings.Join(failures, "; ")
	res.Interrupted = strings.Join(interrupted, "; ") // an interrupted shard saw only part of its run

	// A check with a baseline (check.Starter) was judged by each shard
	// against its own baseline: combine the shards' verdicts.
	j.Verdicts(ctx, &mergedEnv{hs: hs, ts: ts}, &res, func(i int, ck check.Checker) (check.Verdict, bool) {
		if _, ok := ck.(check.Starter); ok {
			return combine(s.Checks[i].Name, i, hs, ts), true
		}
		return check.Verdict{}, false
	})
	for _, t := range ts { // restarts are not events: the shard that restarted the server kept them
		res.Markers = append(res.Markers, result.MarkersOf(t.Result.Markers, result.MarkServerRestart)...)
	}
	res.MarkViolations(nil)
	out.Result = res
	return out, nil
}

// applyHistograms replaces the latency figures Fill computed from the events
// with those of the merged histograms, after checking that both counted the
// same samples.
func applyHistograms(res *result.Scenario, hs *metrics.Histograms) error {
	imp := func(s *hdrhistogram.Snapshot) *hdrhistogram.Histogram {
		if s == nil {
			return metrics.NewHistogram()
		}
		return hdrhistogram.Import(s)
	}
	overall := imp(hs.Overall)
	if overall.TotalCount() != res.LatencyMS.Count {
		return fmt.Errorf("events carry %d latency samples, histograms %d", res.LatencyMS.Count, overall.TotalCount())
	}
	res.LatencyMS = metrics.Summary(overall)
	for i := range res.Roles {
		r := &res.Roles[i]
		rh := hs.Roles[r.Name]
		lat := imp(rh.Delivery)
		if tick := imp(rh.Tick); lat.TotalCount() == 0 && tick.TotalCount() > 0 {
			lat = tick
		}
		if lat.TotalCount() != r.LatencyMS.Count {
			return fmt.Errorf("role %s: events carry %d latency samples, histograms %d", r.Name, r.LatencyMS.Count, lat.TotalCount())
		}
		r.LatencyMS = metrics.Summary(lat)
		r.Distribution = metrics.Distribution(lat)
		r.ConnectMS = metrics.Summary(imp(rh.Connect))
		r.FirstMessageMS = metrics.Summary(imp(rh.FirstMessage))
	}
	return nil
}

// align returns each shard's offset from the earliest shard's start (its
// At 0 becomes the merge's 0), and sets h's StartedAt to that start.
func align(hs []*Header, h *Header) []time.Duration {
	var base time.Time
	for _, sh := range hs {
		if !sh.StartedAt.IsZero() && (base.IsZero() || sh.StartedAt.Before(base)) {
			base = sh.StartedAt
		}
	}
	offsets := make([]time.Duration, len(hs))
	for i, sh := range hs {
		if !sh.StartedAt.IsZero() {
			offsets[i] = sh.StartedAt.Sub(base)
		}
	}
	if !base.IsZero() {
		h.StartedAt = base
	}
	return offsets
}

// replay feeds the shards' events to j in time order (a heap over one
// cursor per shard), counting them in out.Events.
func replay(ctx context.Context, rs []*Reader, offsets []time.Duration, j *judge.Judge, out *Scenario) error {
	var q byTime
	advance := func(c *cursor) (bool, error) {
		e, err := rs[c.shard].Event()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		e.At += c.offset
		c.e = e
		return true, nil
	}
	for i := range rs {
		c := &cursor{shard: i, offset: offsets[i]}
		ok, err := advance(c)
		if err != nil {
			return err
		}
		if ok {
			q = append(q, c)
		}
	}
	heap.Init(&q)
	for q.Len() > 0 {
		if out.Events%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		c := q[0]
		j.Observe(c.e)
		out.Events++
		ok, err := advance(c)
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(&q, 0)
		} else {
			heap.Pop(&q)
		}
	}
	return nil
}

// combine merges the shards' verdicts of a check that merge cannot re-run:
// the worst status wins, violations add up, evidence and summaries are
// labelled by shard.
func combine(name string, idx int, hs []*Header, ts []*Trailer) check.Verdict {
	rank := map[check.Status]int{check.Pass: 0, check.NotMeasurable: 1, check.Fail: 2}
	v := check.Verdict{Name: name, Status: check.Pass, Evidence: []check.Evidence{}}
	var parts []string
	for i, t := range ts {
		sv := check.Verdict{Status: check.NotMeasurable, Summary: "no verdict: the shard's run did not complete"}
		if idx < len(t.Result.Checks) {
			sv = t.Result.Checks[idx]
		}
		r, known := rank[sv.Status]
		if !known {
			r = rank[check.Fail]
		}
		if r > rank[v.Status] {
			v.Status = sv.Status
			if !known {
				v.Status = check.Fail
			}
		}
		v.Violations += sv.Violations
		for _, e := range sv.Evidence {
			if len(v.Evidence) < check.MaxEvidence {
				e.Detail = "shard " + hs[i].Label() + ": " + e.Detail
				v.Evidence = append(v.Evidence, e)
			}
		}
		parts = append(parts, "shard "+hs[i].Label()+": "+sv.Summary)
	}
	v.Summary = strings.Join(parts, "; ")
	return v
}

// mergedEnv answers checkers at merge time: no server to query, only what
// the shards recorded.
type mergedEnv struct {
	hs []*Header
	ts []*Trailer
}

var _ check.Env = (*mergedEnv)(nil)

func (*mergedEnv) AdminURL() string { return "" }

func (*mergedEnv) Channelz(context.Context) (int, int, bool, error) { return 0, 0, false, nil }

// Healthy is true when every shard that asked found the target serving.
func (m *mergedEnv) Healthy(context.Context) (bool, error) {
	asked := false
	for i, t := range m.ts {
		h := t.Health
		if h == nil {
			continue
		}
		asked = true
		if !h.OK {
			return false, fmt.Errorf("shard %s saw the target unhealthy: %s", m.hs[i].Label(), h.Err)
		}
	}
	if !asked {
		return false, errors.New("no shard recorded the target's health")
	}
	return true, nil
}
