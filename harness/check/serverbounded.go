package check

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bidikit/bidikit/harness/event"
)

// serverBounded is the "server-bounded" checker: the server stays within
// its bounds at every moment of the run, not only after it settles. It
// takes a baseline before any client connects, then samples the server
// every `every` from the run's first event until its verdict (the settle
// time included): resident memory, heap in use and goroutines from the
// admin endpoint's Prometheus /metrics (process_resident_memory_bytes,
// go_memstats_heap_inuse_bytes, go_goroutines; read with the leaks
// checker's bounded GET), the sockets and streams open on the target from
// gRPC channelz (only when a sockets or streams bound asks for them), and
// the target's gRPC health. It fails when a
// figure goes over its bound — absolute (rss_max, heap_max,
// goroutines_max) or over the baseline (rss_over_baseline,
// heap_over_baseline, goroutines_over_baseline) — at any sample, and when
// health is ever anything but SERVING (a health call that fails counts:
// the server did not answer). Evidence: the peak, when, the first sample
// over the bound, and which attacks (event.Attack: harness/h2attack) were
// running then; the summary of a pass gives every peak and what each
// attack's server answered.
//
// Not measurable, never a pass: no admin URL, or /metrics did not answer
// at the baseline (or lacked a bounded figure), fewer than min_samples
// samples, or health did not answer at the baseline while health is
// judged. A figure proven over its bound still fails.
//
// Parameters (sizes as bytes, or "64MiB", "512KiB", "1GiB", "100MB"; "off"
// turns a bound off, e.g. rss under the race detector, whose shadow memory
// grows and is never given back):
//
//	every: 250ms                    # sampling interval, within [50ms, 10s]
//	rss_over_baseline: 64MiB        # default 64MiB
//	heap_over_baseline: 64MiB       # default 64MiB
//	goroutines_over_baseline: 2000  # default 2000
//	rss_max, heap_max, goroutines_max   # absolute bounds, default none
//	sockets_max, sockets_over_baseline, streams_max, streams_over_baseline
//	                                # channelz (sockets, streams open on the target): default none
//	health: true                    # health must stay SERVING; default true
//	min_samples: 4                  # default 4
type serverBounded struct {
	p      ServerBoundedParams
	bounds [nFigures]figBound
	health bool

	env     Env
	base    string // admin URL
	started bool
	bl      boundSample // the baseline

	// The sampler goroutine starts at the first Observe and ends in
	// Verdict (stop, then done). It owns the fields under mu while it
	// runs; Verdict reads them after done.
	once       sync.Once
	stop, done chan struct{}
	mu         sync.Mutex
	stats      [nFigures]figStat
	samples    int
	health0    healthStat
	violations atomic.Int64

	// Observe's (the dispatcher goroutine's): the run's start on the wall
	// clock (estimated from events), and the attacks' spans.
	runStart  time.Time
	estimates int
	spans     []attackSpan
	outcomes  map[string]*attackOutcome
}

// ServerBoundedParams are server-bounded's parameters (see serverBounded).
// Size fields take a whole number of bytes or text such as "64MiB".
type ServerBoundedParams struct {
	Every                  time.Duration `yaml:"every"`
	RSSMax                 any           `yaml:"rss_max"`
	RSSOverBaseline        any           `yaml:"rss_over_baseline"`
	HeapMax                any           `yaml:"heap_max"`
	HeapOverBaseline       any           `yaml:"heap_over_baseline"`
	GoroutinesMax          *int          `yaml:"goroutines_max"`
	GoroutinesOverBaseline *int          `yaml:"goroutines_over_baseline"`
	// Sockets and streams open on the target, from gRPC channelz: no bound
	// by default (honest clients open their own); a bound set on a target
	// without channelz makes the check not measurable.
	SocketsMax          *int  `yaml:"sockets_max"`
	SocketsOverBaseline *int  `yaml:"sockets_over_baseline"`
	StreamsMax          *int  `yaml:"streams_max"`
	StreamsOverBaseline *int  `yaml:"streams_over_baseline"`
	Health              *bool `yaml:"health"`
	MinSamples          int   `yaml:"min_samples"`
}

// Defaults of ServerBoundedParams.
const (
	DefaultBoundedEvery                  = 250 * time.Millisecond
	DefaultBoundedRSSOverBaseline        = 64 << 20
	DefaultBoundedHeapOverBaseline       = 64 << 20
	DefaultBoundedGoroutinesOverBaseline = 2000
	DefaultBoundedMinSamples             = 4
	// maxBoundedSamples bounds one run's sampling (with `every` 250ms:
	// about 11 hours).
	maxBoundedSamples = 160_000
	// maxAttackSpans bounds the attack spans kept for evidence.
	maxAttackSpans = 4096
	// maxStartEstimates: the run's start is estimated from this many
	// first events.
	maxStartEstimates = 1000
)

// figBound is one figure's bounds; a NaN bound is unset.
type figBound struct{ max, over float64 }

func (b figBound) set() bool { return !math.IsNaN(b.max) || !math.IsNaN(b.over) }

// figStat is what the samples showed of one figure.
type figStat struct {
	n         int // samples that had it
	missing   int
	lastErr   string
	peak      float64
	peakAt    time.Time
	firstOver time.Time // zero: never over
	overWhy   string    // the bound it went over, for the evidence
}

// healthStat is what the samples showed of health.
type healthStat struct {
	asked, unhealthy int
	first            time.Time
	firstWhy         string
}

// attackSpan is one client's HTTP/2 attack: when it started and stopped
// (stop < 0: still running at the end).
type attackSpan struct {
	name, role  string
	start, stop time.Duration
}

// attackOutcome is what an attack's stops said (the first, and how many).
type attackOutcome struct {
	runs  int
	first string
}

func init() {
	Register("server-bounded", func(decode func(any) error) (Checker, error) {
		p := ServerBoundedParams{Every: DefaultBoundedEvery, MinSamples: DefaultBoundedMinSamples}
		if err := decode(&p); err != nil {
			return nil, err
		}
		return newServerBounded(p)
	})
}

// newServerBounded resolves p's bounds, naming the first bad parameter.
func newServerBounded(p ServerBoundedParams) (*serverBounded, error) {
	if p.Every < 50*time.Millisecond || p.Every > 10*time.Second {
		return nil, fmt.Errorf("server-bounded: every must be within [50ms, 10s], got %s", p.Every)
	}
	if p.MinSamples < 1 || p.MinSamples > 10_000 {
		return nil, fmt.Errorf("server-bounded: min_samples must be within [1, 10000], got %d", p.MinSamples)
	}
	s := &serverBounded{p: p, health: p.Health == nil || *p.Health, outcomes: map[string]*attackOutcome{}}
	nan := math.NaN()
	for i := range s.bounds {
		s.bounds[i] = figBound{nan, nan}
	}
	var err error
	size := func(name string, v any, def float64) float64 {
		if err != nil {
			return nan
		}
		if v == nil {
			return def
		}
		var n int64
		n, err = parseSize(v)
		if err != nil {
			err = fmt.Errorf("server-bounded: %s: %w", name, err)
			return nan
		}
		if n < 0 {
			return nan // off
		}
		return float64(n)
	}
	count := func(name string, v *int, def float64) float64 {
		if v == nil {
			return def
		}
		if *v < 0 && err == nil {
			err = fmt.Errorf("server-bounded: %s must not be negative, got %d", name, *v)
		}
		return float64(*v)
	}
	s.bounds[figRSS] = figBound{size("rss_max", p.RSSMax, nan), size("rss_over_baseline", p.RSSOverBaseline, DefaultBoundedRSSOverBaseline)}
	s.bounds[figHeap] = figBound{size("heap_max", p.HeapMax, nan), size("heap_over_baseline", p.HeapOverBaseline, DefaultBoundedHeapOverBaseline)}
	s.bounds[figGoroutines] = figBound{count("goroutines_max", p.GoroutinesMax, nan),
		count("goroutines_over_baseline", p.GoroutinesOverBaseline, DefaultBoundedGoroutinesOverBaseline)}
	s.bounds[figSockets] = figBound{count("sockets_max", p.SocketsMax, nan), count("sockets_over_baseline", p.SocketsOverBaseline, nan)}
	s.bounds[figStreams] = figBound{count("streams_max", p.StreamsMax, nan), count("streams_over_baseline", p.StreamsOverBaseline, nan)}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// parseSize reads a size: a whole number of bytes, or text "N" followed by
// B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024); "off"
// is -1.
func parseSize(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return nonNegative(int64(x))
	case int64:
		return nonNegative(x)
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Errorf("%d is too large", x)
		}
		return int64(x), nil
	case float64:
		return 0, fmt.Errorf("%v is not a whole number of bytes; write bytes or a size like \"64MiB\"", x)
	case string:
		t := strings.TrimSpace(x)
		if t == "off" {
			return -1, nil
		}
		i := 0
		for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
			i++
		}
		num, unit := t[:i], strings.TrimSpace(t[i:])
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || num == "" {
			return 0, fmt.Errorf("%q is not a size; write bytes or a size like \"64MiB\", \"512KiB\", \"1GiB\", \"100MB\"", x)
		}
		mult := map[string]float64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
		if mult == 0 {
			return 0, fmt.Errorf("%q: unknown unit %q; use B, KB, MB, GB, KiB, MiB or GiB", x, unit)
		}
		if f*mult > math.MaxInt64 {
			return 0, fmt.Errorf("%q is too large", x)
		}
		return int64(f * mult), nil
	}
	return 0, fmt.Errorf("%v is not a size; write bytes or a size like \"64MiB\"", v)
}

func nonNegative(n int64) (int64, error) {
	if n < 0 {
		return 0, fmt.Errorf("%d is negative", n)
	}
	return n, nil
}

// Start takes the baseline; it blocks for one reading.
func (s *serverBounded) Start(ctx context.Context, env Env) error {
	s.started = true
	s.env = env
	if env == nil {
		return nil
	}
	s.base = env.AdminURL()
	s.bl = readBoundSample(ctx, s.base, env, s.health, s.channelz())
	return nil
}

// Observe starts the sampler at the first event, estimates the run's
// start on the wall clock, and records the attacks' spans and outcomes.
func (s *serverBounded) Observe(e *event.Event) {
	if s.estimates < maxStartEstimates {
		// Events reach the dispatcher after they happened: the earliest
		// estimate is the closest.
		s.estimates++
		if now := time.Now(); s.runStart.IsZero() || now.Add(-e.At).Before(s.runStart) {
			s.runStart = now.Add(-e.At)
		}
	}
	s.once.Do(s.startSampler)
	if e.Kind != event.Attack {
		return
	}
	switch e.Field {
	case event.AttackStart:
		if len(s.spans) < maxAttackSpans {
			s.spans = append(s.spans, attackSpan{name: e.Scope, role: e.Role, start: e.At, stop: -1})
		}
	case event.AttackStop:
		for i := len(s.spans) - 1; i >= 0; i-- {
			if sp := &s.spans[i]; sp.name == e.Scope && sp.role == e.Role && sp.stop < 0 {
				sp.stop = e.At
				break
			}
		}
		o := s.outcomes[e.Scope]
		if o == nil {
			o = &attackOutcome{first: e.Detail}
			s.outcomes[e.Scope] = o
		}
		o.runs++
	}
}

// startSampler runs the sampling goroutine (when there is an env to ask).
func (s *serverBounded) startSampler() {
	if s.env == nil {
		return
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.sample()
}

// sample reads the server every p.Every until stop (at most
// maxBoundedSamples readings, each bounded by its own timeouts).
func (s *serverBounded) sample() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(s.p.Every)
	defer t.Stop()
	for range maxBoundedSamples {
		r := readBoundSample(ctx, s.base, s.env, s.health, s.channelz())
		if ctx.Err() != nil {
			return // cut short by the verdict: not a reading
		}
		s.record(r)
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// record adds one reading to the stats and counts new violations.
func (s *serverBounded) record(r boundSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	for f := range nFigures {
		st := &s.stats[f]
		v := r.vals[f]
		if v < 0 {
			st.missing++
			st.lastErr = r.errs[f]
			continue
		}
		st.n++
		if st.n == 1 || v > st.peak {
			st.peak, st.peakAt = v, r.wall
		}
		if st.firstOver.IsZero() {
			if why := s.over(f, v); why != "" {
				st.firstOver, st.overWhy = r.wall, why
				s.violations.Add(1)
			}
		}
	}
	if r.asked {
		s.health0.asked++
		if !r.healthy {
			s.health0.unhealthy++
			if s.health0.unhealthy == 1 {
				s.health0.first, s.health0.firstWhy = r.wall, r.health
				s.violations.Add(1)
			}
		}
	}
}

// over says which bound v of figure f exceeds ("" when none).
func (s *serverBounded) over(f boundFigure, v float64) string {
	b := s.bounds[f]
	if !math.IsNaN(b.max) && v > b.max {
		return fmt.Sprintf("%s_max %s", f, f.render(b.max))
	}
	if base := s.bl.vals[f]; !math.IsNaN(b.over) && base >= 0 && v-base > b.over {
		return fmt.Sprintf("%s_over_baseline +%s over the baseline %s", f, strings.TrimPrefix(f.render(b.over), "+"), f.render(base))
	}
	return ""
}

// channelz reports whether a bound needs channelz (sockets or streams).
func (s *serverBounded) channelz() bool {
	return s.bounds[figSockets].set() || s.bounds[figStreams].set()
}

// Violations implements Live: figures that went over a bound, and health
// leaving SERVING, so far.
func (s *serverBounded) Violations() int { return int(s.violations.Load()) }

// at renders a wall time as time since the run's start.
func (s *serverBounded) at(t time.Time) time.Duration {
	if s.runStart.IsZero() || t.Before(s.runStart) {
		return 0
	}
	return t.Sub(s.runStart)
}

// during names the attacks running at run time t, or, when none was, the
// last one that had stopped by then.
func (s *serverBounded) during(t time.Duration) string {
	seen := map[string]int{}
	var names []string
	var last *attackSpan
	for i, sp := range s.spans {
		if sp.start <= t && (sp.stop < 0 || t <= sp.stop) {
			key := fmt.Sprintf("%s (role %s", sp.name, sp.role)
			if seen[key] == 0 {
				names = append(names, key)
			}
			seen[key]++
		} else if sp.stop >= 0 && sp.stop < t && (last == nil || sp.stop > last.stop) {
			last = &s.spans[i]
		}
	}
	switch {
	case len(names) > 0:
		sort.Strings(names)
		for i, n := range names {
			names[i] = fmt.Sprintf("%s, %d client(s))", n, seen[n])
		}
		return "while " + strings.Join(names, " and ") + " ran"
	case last != nil:
		return fmt.Sprintf("after %s (role %s) stopped at %s", last.name, last.role, last.stop.Round(10*time.Millisecond))
	case len(s.spans) == 0:
		return "no HTTP/2 attack ran in this scenario"
	}
	return "before any HTTP/2 attack started"
}

// Verdict stops the sampler and judges what it saw.
func (s *serverBounded) Verdict(_ context.Context, env Env) Verdict {
	v := Verdict{Name: "server-bounded", Evidence: []Evidence{}}
	if s.done != nil {
		close(s.stop)
		<-s.done
	}
	if env == nil || !s.started || s.env == nil {
		return notMeasurable(&v, "no baseline was taken before the clients connected (the checker was not started with the server's admin endpoints)")
	}
	var unmeasured []string
	for f := range nFigures {
		if !s.bounds[f].set() {
			continue
		}
		if s.bl.vals[f] < 0 {
			unmeasured = append(unmeasured, fmt.Sprintf("%s (%s not read at the baseline: %s)", f, figureMetric[f], s.bl.errs[f]))
		} else if st := s.stats[f]; st.n == 0 && s.samples > 0 {
			unmeasured = append(unmeasured, fmt.Sprintf("%s (no sample had %s: %s)", f, figureMetric[f], st.lastErr))
		} else if st.missing > 0 && (st.n < s.p.MinSamples || st.missing > st.n) {
			// A source lost during the run (an admin endpoint starved by
			// the very load judged) leaves the peak unseen.
			unmeasured = append(unmeasured, fmt.Sprintf("%s (%s read in only %d of %d samples, the rest failed: %s)",
				f, figureMetric[f], st.n, st.n+st.missing, st.lastErr))
		}
	}
	if s.health && !s.bl.healthy {
		why := s.bl.health
		if why == "" {
			why = "not asked"
		}
		unmeasured = append(unmeasured, "health at the baseline ("+why+")")
	}
	if s.samples < s.p.MinSamples {
		unmeasured = append(unmeasured, fmt.Sprintf("%d samples during the run, %d needed (min_samples)", s.samples, s.p.MinSamples))
	}

	var peaks []string
	for f := range nFigures {
		st := s.stats[f]
		if st.n == 0 || s.bl.vals[f] < 0 {
			continue
		}
		base := s.bl.vals[f]
		peaks = append(peaks, fmt.Sprintf("%s peak %s at %s (baseline %s, %s)", f, f.render(st.peak),
			s.at(st.peakAt).Round(10*time.Millisecond), f.render(base), f.renderSigned(st.peak-base)))
		if st.firstOver.IsZero() {
			continue
		}
		pt, ft := s.at(st.peakAt), s.at(st.firstOver)
		v.Add(Evidence{Scope: f.String(), At: ft, Detail: fmt.Sprintf("%s went over %s at %s, %s; it peaked at %s (%s over the baseline %s) at %s, %s",
			f, st.overWhy, ft.Round(10*time.Millisecond), s.during(ft),
			f.render(st.peak), f.renderSigned(st.peak-base), f.render(base), pt.Round(10*time.Millisecond), s.during(pt))})
	}
	h := s.health0
	healthNote := "health not judged (health: false)"
	if s.health {
		healthNote = fmt.Sprintf("health SERVING at all %d samples", h.asked)
		if h.unhealthy > 0 {
			ft := s.at(h.first)
			healthNote = fmt.Sprintf("health not SERVING at %d of %d samples", h.unhealthy, h.asked)
			v.Add(Evidence{Scope: "health", At: ft, Detail: fmt.Sprintf("health left SERVING at %s (%s); %d of %d samples not SERVING; %s",
				ft.Round(10*time.Millisecond), h.firstWhy, h.unhealthy, h.asked, s.during(ft))})
		}
	}
	every := fmt.Sprintf("%d samples every %s", s.samples, s.p.Every)
	attacks := s.attackNotes()
	if v.Violations == 0 && len(unmeasured) > 0 {
		return notMeasurable(&v, "could not sample the server: %s; measured: %s; %s%s", strings.Join(unmeasured, "; "), every, strings.Join(peaks, ", "), attacks)
	}
	names := make([]string, 0, len(v.Evidence))
	for _, e := range v.Evidence {
		names = append(names, e.Scope)
	}
	summarise(&v, fmt.Sprintf("within bounds at every sample (%s): %s; %s%s", every, strings.Join(peaks, ", "), healthNote, attacks),
		"over its bounds during the run (%s): %s; %s; %s%s", strings.Join(names, ", "), every, strings.Join(peaks, ", "), healthNote, attacks)
	if len(unmeasured) > 0 {
		v.Summary += "; not measured: " + strings.Join(unmeasured, "; ")
	}
	return v
}

// attackNotes renders what each attack's server answered (its first
// stop's summary), for the verdict's summary.
func (s *serverBounded) attackNotes() string {
	if len(s.outcomes) == 0 {
		return ""
	}
	names := make([]string, 0, len(s.outcomes))
	for n := range s.outcomes {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		o := s.outcomes[n]
		parts[i] = fmt.Sprintf("%s x%d, the first: %s", n, o.runs, o.first)
	}
	return "; attacks: " + strings.Join(parts, "; ")
}
