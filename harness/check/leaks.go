package check

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/bidikit/bidikit/harness/event"
)

// leaks is the "leaks" checker: it takes a baseline of the server's
// goroutines, live heap and channelz open sockets and streams before any
// client connects, counts the client streams the run opened and ended
// (Observe, on the engine's dispatcher goroutine), and after the run waits
// up to settle for each figure to come back within its tolerance of the
// baseline; the goroutine and heap tolerances grow with the streams ended
// (LeakParams). Sources: the admin endpoint's /debug/pprof/goroutine and
// /debug/pprof/heap?gc=1 (or /metrics), and gRPC channelz (leaks_sample.go).
//
// Not measurable, never pass: no goroutine count at the baseline (no or an
// unreachable admin URL), no client stream opened, or a source that
// answered at the baseline and no longer answers after settle (a dead
// server). Fail: a figure still above its tolerance after settle; the
// evidence names the goroutine stacks that grew (leaks_stacks.go).
type leaks struct {
	p       LeakParams
	base    sample
	started bool

	// open marks the clients whose stream is open (Connect seen, its
	// Disconnect not yet); bounded by the plan's clients.
	open        map[int]bool
	opened      int // Connect events
	ended       int // Disconnects of opened streams: what the tolerances scale with
	failedOpens int // Disconnects with no stream open (dial or open failed)
}

// Defaults of LeakParams' tolerances; see LeakParams.
const (
	DefaultLeakGoroutinesOver           = 2
	DefaultLeakGoroutinesPerEndedStream = 0.1
	DefaultLeakHeapOverBytes            = 32 << 20
	DefaultLeakHeapPerEndedStreamBytes  = 16 << 10
	DefaultLeakSocketsOver              = 2
	DefaultLeakStreamsOver              = 2
	DefaultLeakSettle                   = 15 * time.Second
)

// LeakParams are the leaks checker's parameters. After the run, each
// figure must come back within its tolerance over the baseline:
//
//	goroutines: goroutines_over_baseline_max + goroutines_per_ended_stream_max x streams ended (rounded down)
//	heap:       heap_over_baseline_max_bytes + heap_per_ended_stream_max_bytes x streams ended
//	sockets, streams (channelz): sockets_over_baseline_max, streams_over_baseline_max
//
// "Streams ended" counts the client streams that opened (Connect) and
// ended (Disconnect) during the run; failed opens do not count. Defaults:
// 2 + 0.1 per ended stream (a leak of one goroutine per ended stream fails
// from 3 ended streams on, whatever their number), 32 MiB + 16 KiB per
// ended stream of live heap (the heap of an in-process run also holds the
// harness's own growth), 2 sockets, 2 streams, settle 15s.
//
// A nil field is unset. Setting goroutines_over_baseline_max alone keeps
// the old absolute bound (the per-stream fraction is then 0); set
// goroutines_per_ended_stream_max too to scale from your own constant. The
// heap pair works the same way.
type LeakParams struct {
	Settle                      time.Duration `yaml:"settle"`
	GoroutinesOverBaselineMax   *int          `yaml:"goroutines_over_baseline_max"`
	GoroutinesPerEndedStreamMax *float64      `yaml:"goroutines_per_ended_stream_max"`
	HeapOverBaselineMaxBytes    *int64        `yaml:"heap_over_baseline_max_bytes"`
	HeapPerEndedStreamMaxBytes  *int64        `yaml:"heap_per_ended_stream_max_bytes"`
	SocketsOverBaselineMax      *int          `yaml:"sockets_over_baseline_max"`
	StreamsOverBaselineMax      *int          `yaml:"streams_over_baseline_max"`
}

// LeakTolerance is how far above its baseline each figure may stay.
type LeakTolerance struct {
	Goroutines int
	HeapBytes  int64
	Sockets    int
	Streams    int
}

// Tolerance resolves p's tolerances for a run that ended ended streams.
func (p LeakParams) Tolerance(ended int) LeakTolerance {
	n := max(ended, 0)
	t := LeakTolerance{
		Goroutines: p.goroutinesConst() + int(math.Floor(p.perGoroutine()*float64(n))),
		HeapBytes:  p.heapConst() + p.perHeap()*int64(n),
		Sockets:    DefaultLeakSocketsOver,
		Streams:    DefaultLeakStreamsOver,
	}
	if p.SocketsOverBaselineMax != nil {
		t.Sockets = *p.SocketsOverBaselineMax
	}
	if p.StreamsOverBaselineMax != nil {
		t.Streams = *p.StreamsOverBaselineMax
	}
	return t
}

// formula renders how the goroutine and heap tolerances for ended
// streams were computed ("+12 = 2 + 0.1 x 100 ended streams").
func (p LeakParams) formula(ended int) (goroutines, heap string) {
	t := p.Tolerance(ended)
	goroutines = fmt.Sprintf("+%d", t.Goroutines)
	if per := p.perGoroutine(); per > 0 {
		goroutines = fmt.Sprintf("+%d = %d + %g x %d ended streams", t.Goroutines, p.goroutinesConst(), per, ended)
	}
	heap = "+" + leakMiB(t.HeapBytes)
	if per := p.perHeap(); per > 0 {
		heap = fmt.Sprintf("+%s = %s + %.1f KiB x %d ended streams", leakMiB(t.HeapBytes), leakMiB(p.heapConst()), float64(per)/1024, ended)
	}
	return goroutines, heap
}

func (p LeakParams) goroutinesConst() int {
	if p.GoroutinesOverBaselineMax != nil {
		return *p.GoroutinesOverBaselineMax
	}
	return DefaultLeakGoroutinesOver
}

// perGoroutine is the goroutines allowed per ended stream: 0 when only
// the absolute bound was set.
func (p LeakParams) perGoroutine() float64 {
	switch {
	case p.GoroutinesPerEndedStreamMax != nil:
		return *p.GoroutinesPerEndedStreamMax
	case p.GoroutinesOverBaselineMax != nil:
		return 0
	}
	return DefaultLeakGoroutinesPerEndedStream
}

func (p LeakParams) heapConst() int64 {
	if p.HeapOverBaselineMaxBytes != nil {
		return *p.HeapOverBaselineMaxBytes
	}
	return DefaultLeakHeapOverBytes
}

// perHeap is the heap bytes allowed per ended stream: 0 when only the
// absolute bound was set.
func (p LeakParams) perHeap() int64 {
	switch {
	case p.HeapPerEndedStreamMaxBytes != nil:
		return *p.HeapPerEndedStreamMaxBytes
	case p.HeapOverBaselineMaxBytes != nil:
		return 0
	}
	return DefaultLeakHeapPerEndedStreamBytes
}

// validate rejects impossible parameters, naming the field.
func (p LeakParams) validate() error {
	if p.Settle <= 0 || p.Settle > 10*time.Minute {
		return fmt.Errorf("leaks: settle must be within (0, 10m], got %s", p.Settle)
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"goroutines_over_baseline_max", p.GoroutinesOverBaselineMax},
		{"sockets_over_baseline_max", p.SocketsOverBaselineMax}, {"streams_over_baseline_max", p.StreamsOverBaselineMax}} {
		if f.v != nil && *f.v < 0 {
			return fmt.Errorf("leaks: %s must not be negative, got %d", f.name, *f.v)
		}
	}
	if v := p.GoroutinesPerEndedStreamMax; v != nil && (math.IsNaN(*v) || *v < 0 || *v > 100) {
		return fmt.Errorf("leaks: goroutines_per_ended_stream_max must be within [0, 100], got %v", *v)
	}
	if v := p.HeapOverBaselineMaxBytes; v != nil && *v < 0 {
		return fmt.Errorf("leaks: heap_over_baseline_max_bytes must not be negative, got %d", *v)
	}
	if v := p.HeapPerEndedStreamMaxBytes; v != nil && (*v < 0 || *v > 1<<30) {
		return fmt.Errorf("leaks: heap_per_ended_stream_max_bytes must be within [0, 1 GiB], got %d", *v)
	}
	return nil
}

func init() {
	Register("leaks", func(decode func(any) error) (Checker, error) {
		p := LeakParams{Settle: DefaultLeakSettle}
		if err := decode(&p); err != nil {
			return nil, err
		}
		if err := p.validate(); err != nil {
			return nil, err
		}
		return &leaks{p: p, open: map[int]bool{}}, nil
	})
}

// Observe counts the streams opened and ended.
func (l *leaks) Observe(e *event.Event) {
	switch e.Kind {
	case event.Connect:
		l.opened++
		l.open[e.Client] = true
	case event.Disconnect:
		if l.open[e.Client] {
			l.ended++
			delete(l.open, e.Client)
		} else {
			l.failedOpens++
		}
	}
}

// Start takes the baseline; it blocks for one reading (a few HTTP round
// trips and a channelz call).
func (l *leaks) Start(ctx context.Context, env Env) error {
	l.started = true
	if env == nil {
		return nil
	}
	l.base = readSample(ctx, env)
	return nil
}

// leakOver is one figure above its tolerance.
type leakOver struct {
	src    leakSource
	short  string // for the summary: "goroutines +12 (allowed +3)"
	detail string // for the evidence: the figures and the tolerance's formula
}

// excess lists the figures of s above the baseline's tolerance t (figures
// missing on either side are not compared here: see lost).
func (l *leaks) excess(s sample, t LeakTolerance) []leakOver {
	var out []leakOver
	b := l.base
	if b.goroutines >= 0 && s.goroutines >= 0 && s.goroutines-b.goroutines > t.Goroutines {
		g, _ := l.p.formula(l.ended)
		out = append(out, leakOver{srcGoroutines, fmt.Sprintf("goroutines +%d (allowed +%d)", s.goroutines-b.goroutines, t.Goroutines),
			fmt.Sprintf("goroutines %d vs baseline %d (+%d, allowed %s)", s.goroutines, b.goroutines, s.goroutines-b.goroutines, g)})
	}
	if b.heap >= 0 && s.heap >= 0 && s.heap-b.heap > t.HeapBytes {
		_, h := l.p.formula(l.ended)
		out = append(out, leakOver{srcHeap, fmt.Sprintf("heap +%s (allowed +%s)", leakMiB(s.heap-b.heap), leakMiB(t.HeapBytes)),
			fmt.Sprintf("live heap %s vs baseline %s (+%s, allowed %s)", leakMiB(s.heap), leakMiB(b.heap), leakMiB(s.heap-b.heap), h)})
	}
	if b.sockets >= 0 && s.sockets >= 0 && s.sockets-b.sockets > t.Sockets {
		out = append(out, leakOver{srcChannelz, fmt.Sprintf("sockets +%d (allowed +%d)", s.sockets-b.sockets, t.Sockets),
			fmt.Sprintf("open sockets %d vs baseline %d (+%d, allowed +%d)", s.sockets, b.sockets, s.sockets-b.sockets, t.Sockets)})
	}
	if b.streams >= 0 && s.streams >= 0 && s.streams-b.streams > t.Streams {
		out = append(out, leakOver{srcChannelz, fmt.Sprintf("streams +%d (allowed +%d)", s.streams-b.streams, t.Streams),
			fmt.Sprintf("open streams %d vs baseline %d (+%d, allowed +%d)", s.streams, b.streams, s.streams-b.streams, t.Streams)})
	}
	return out
}

// lost lists the sources that answered at the baseline but not in s, each
// as "source: error".
func (l *leaks) lost(s sample) []string {
	var out []string
	for src := range nSources {
		if l.base.answered(src) && !s.answered(src) {
			out = append(out, fmt.Sprintf("%s: %s", src, s.errs[src]))
		}
	}
	return out
}

// leakSettleStep is the pause between two readings while settling.
const leakSettleStep = 500 * time.Millisecond

// Verdict reads the server until every figure is back within its
// tolerance, or settle has passed (at most 1000 readings); it blocks that
// long plus one reading.
func (l *leaks) Verdict(ctx context.Context, env Env) Verdict {
	v := Verdict{Name: "leaks", Evidence: []Evidence{}}
	if env == nil || !l.started {
		v.Status, v.Summary = NotMeasurable, "no baseline was taken before the clients connected (the checker was not started with the server's admin endpoints)"
		return v
	}
	if !l.base.answered(srcGoroutines) {
		v.Status = NotMeasurable
		v.Summary = "the server's goroutines could not be counted at the baseline: " + l.base.errs[srcGoroutines]
		if !l.base.answered(srcChannelz) && l.base.errs[srcChannelz] != "" {
			v.Summary += "; channelz: " + l.base.errs[srcChannelz]
		}
		return v
	}
	if l.opened == 0 {
		v.Status = NotMeasurable
		v.Summary = fmt.Sprintf("no client stream opened (%d failed opens): nothing could leak, nothing was judged", l.failedOpens)
		return v
	}
	tol := l.p.Tolerance(l.ended)
	began := time.Now()
	deadline := began.Add(l.p.Settle)
	var last sample
	var overs []leakOver
	var gone []string
	for attempt := 0; attempt < 1000; attempt++ {
		last = readSample(ctx, env)
		overs, gone = l.excess(last, tol), l.lost(last)
		if (len(overs) == 0 && len(gone) == 0) || !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(min(leakSettleStep, time.Until(deadline))) // the last reading falls on the deadline
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	waited := "at the first reading"
	if d := time.Since(began); d >= leakSettleStep {
		waited = "after " + d.Round(100*time.Millisecond).String()
	}
	work := l.work()
	switch {
	case len(overs) > 0:
		for _, o := range overs {
			v.Add(Evidence{Scope: o.src.String(), Detail: fmt.Sprintf("%s: %s", waited, o.detail)})
		}
		if overs[0].src == srcGoroutines {
			l.stackEvidence(&v, last)
		}
		names := make([]string, len(overs))
		for i, o := range overs {
			names[i] = o.short
		}
		v.Status = Fail
		v.Summary = fmt.Sprintf("%s still above the tolerance %s, with %s: %s", leakPlural(len(overs), "figure"), waited, work, strings.Join(names, "; "))
		if len(gone) > 0 {
			v.Summary += "; no longer answering: " + strings.Join(gone, "; ")
		}
	case len(gone) > 0:
		v.Status = NotMeasurable
		v.Summary = fmt.Sprintf("answered at the baseline but not %s (is the server still up?): %s", waited, strings.Join(gone, "; "))
	default:
		v.Status = Pass
		v.Summary = fmt.Sprintf("back within tolerance %s, with %s: %s", waited, work, l.describe(last, tol))
	}
	return v
}

// work renders the streams the run opened and ended.
func (l *leaks) work() string {
	out := fmt.Sprintf("%s ended (%d opened", leakPlural(l.ended, "stream"), l.opened)
	if l.failedOpens > 0 {
		out += fmt.Sprintf(", %d failed opens", l.failedOpens)
	}
	if n := l.opened - l.ended; n > 0 {
		out += fmt.Sprintf(", %d never ended", n)
	}
	return out + ")"
}

// stackEvidence adds the goroutine stacks that grew most between the
// baseline's profile and last's, or says why it cannot.
func (l *leaks) stackEvidence(v *Verdict, last sample) {
	if l.base.profile == nil || last.profile == nil {
		v.Evidence = append(v.Evidence, Evidence{Scope: "goroutine stacks",
			Detail: "no goroutine profile to say where: the count came from /metrics (serve /debug/pprof/goroutine?debug=1 for stacks)"})
		return
	}
	grown := growingStacks(*l.base.profile, *last.profile, topStacks)
	if len(grown) == 0 {
		v.Evidence = append(v.Evidence, Evidence{Scope: "goroutine stacks",
			Detail: "no stack grew between the baseline's goroutine profile and the last one (goroutines came and went between the readings)"})
		return
	}
	for _, g := range grown {
		if len(v.Evidence) >= MaxEvidence {
			return
		}
		v.Evidence = append(v.Evidence, Evidence{Scope: "goroutine stack", Detail: g.detail()})
	}
}

// describe names the figures of s with the baseline's and their tolerance,
// and the sources that were not measured with why.
func (l *leaks) describe(s sample, t LeakTolerance) string {
	b := l.base
	var got, missing []string
	g, h := l.p.formula(l.ended)
	got = append(got, fmt.Sprintf("goroutines %d (baseline %d, %+d, allowed %s)", s.goroutines, b.goroutines, s.goroutines-b.goroutines, g))
	if b.heap >= 0 && s.heap >= 0 {
		got = append(got, fmt.Sprintf("heap %s (baseline %s, %s, allowed %s)", leakMiB(s.heap), leakMiB(b.heap), leakSignedMiB(s.heap-b.heap), h))
	} else {
		missing = append(missing, "heap: "+b.errs[srcHeap])
	}
	if b.answered(srcChannelz) && s.answered(srcChannelz) {
		got = append(got, fmt.Sprintf("sockets %d (baseline %d, allowed +%d), streams %d (baseline %d, allowed +%d)",
			s.sockets, b.sockets, t.Sockets, s.streams, b.streams, t.Streams))
	} else {
		missing = append(missing, "channelz: "+b.errs[srcChannelz])
	}
	out := strings.Join(got, ", ")
	if len(missing) > 0 {
		out += " (not measured: " + strings.Join(missing, "; ") + ")"
	}
	return out
}

// leakMiB renders bytes in MiB with one decimal.
func leakMiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// leakSignedMiB renders a difference in MiB with its sign.
func leakSignedMiB(b int64) string { return fmt.Sprintf("%+.1f MiB", float64(b)/(1<<20)) }

// leakPlural renders "1 stream" or "3 streams".
func leakPlural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
