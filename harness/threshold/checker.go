package threshold

import (
	"context"
	"fmt"
	"math"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/metrics"
)

// Step is how often (in event time) a checker re-evaluates its figure to
// find when it first crossed its bound.
const Step = 250 * time.Millisecond

// MinLiveSamples is how many samples (latency samples, or operations for
// an error share) a figure needs before a crossing counts live: a p99 of
// the first five deliveries says little. A percentile needs more: at least
// ten samples beyond it (1,000 for p99, 10,000 for p999). The final verdict
// judges whatever there is.
const MinLiveSamples = 100

// checker judges one Spec. It implements check.Checker and check.Live.
// Owned by the goroutine that calls Observe (the engine's dispatcher).
type checker struct {
	spec Spec
	def  metricDef

	hist *hdrhistogram.Histogram // latency metrics, µs
	// The first latency sample beyond the bound: when it was sent (event
	// time minus latency) and how long it took. Where a stall began, even
	// when its samples arrive late.
	slow        bool
	slowSentAt  time.Duration
	slowLatency time.Duration

	count   int64 // rate: events of the source inside the window
	errs    int64 // errors: matching errors
	ops     int64 // errors: sends and stream opens
	faulted map[int]bool

	// A rate's whole seconds since From: the current one and the extreme
	// (slowest for a floor, fastest for a ceiling) finished one.
	sec, secCount  int64
	extSec, extCnt int64
	haveExt        bool

	lastAt time.Duration // latest event time seen (any client)
	next   time.Duration // next evaluation time

	// The first crossing, and the one the figure has stayed beyond the
	// bound since (when, the figure and the samples then).
	first, since crossing
	beyond       bool  // beyond the bound at the last evaluation
	now          bool  // beyond it with enough samples (or for good): what Violations reports
	minLive      int64 // samples needed before a crossing counts live
	sticky       bool  // a crossing cannot be undone (max, error counts)
	live         bool  // Violations reports crossings (not rates)
}

// crossing is one evaluation that found the figure beyond its bound.
type crossing struct {
	ok  bool
	at  time.Duration
	val float64
	n   int64
}

// New returns the checker for s (built by ParseBound and the scenario
// parser; an unknown metric is an error).
func New(s Spec) (check.Checker, error) {
	def, ok := metricDefs[s.Metric]
	if !ok {
		return nil, fmt.Errorf("threshold: unknown metric %q (known: %v)", s.Metric, Metrics())
	}
	c := &checker{spec: s, def: def, next: Step, faulted: map[int]bool{}, minLive: MinLiveSamples}
	switch def.kind {
	case latency:
		c.hist = metrics.NewHistogram()
		c.live = true
		c.sticky = def.q == 100 && (s.Op == AtMost || s.Op == Below)
		if def.q < 100 {
			c.minLive = max(c.minLive, int64(math.Ceil(10/(1-def.q/100)-1e-9)))
		}
	case errorsKind:
		c.live = true
		c.sticky = !s.Share && (s.Op == AtMost || s.Op == Below)
	}
	return c, nil
}

// Observe records e when it belongs to the spec's role, and re-evaluates
// the figure every Step of event time.
func (c *checker) Observe(e *event.Event) {
	if e.At > c.lastAt {
		c.lastAt = e.At
	}
	if e.Client >= 0 && e.Role == c.spec.Role {
		c.record(e)
	} else if e.Client < 0 && e.Kind == event.Fault {
		c.faulted[-1] = true // a run-wide fault: every stream's end is the harness's doing
	}
	if c.def.kind != rate && e.At >= c.next {
		c.evaluate(e.At)
		c.next = (e.At/Step + 1) * Step
	}
}

func (c *checker) record(e *event.Event) {
	switch c.def.src {
	case srcDelivery:
		if (e.Kind == event.Deliver || e.Kind == event.Tick) && e.Latency > 0 {
			c.sample(e.At, e.Latency)
		}
	case srcAck:
		if e.Kind == event.Ack && e.Latency > 0 {
			c.sample(e.At, e.Latency)
		}
	case srcConnect:
		if e.Kind == event.Connect {
			c.sample(e.At, e.Latency)
		}
	case srcSent:
		if e.Kind == event.Send {
			c.tally(e.At)
		}
	case srcDelivered:
		if e.Kind == event.Deliver || e.Kind == event.Tick {
			c.tally(e.At)
		}
	case srcAcked:
		if e.Kind == event.Ack {
			c.tally(e.At)
		}
	case srcErrors:
		c.recordError(e)
	}
}

// recordError counts operations (sends, stream opens) and the errors a
// client met: Error events, and streams the server ended with a status,
// except CANCELLED, ends the client chose (event.FieldClientEnd) and ends
// of streams a fault broke, on the stream or run-wide (the harness's own
// doing, not the server's).
func (c *checker) recordError(e *event.Event) {
	switch e.Kind {
	case event.Send:
		c.ops++
		return
	case event.Connect:
		c.ops++
		delete(c.faulted, e.Client)
		return
	case event.Fault:
		c.faulted[e.Client] = true
		return
	case event.Error:
	case event.Disconnect:
		// -1: a run-wide fault (every connection, or the server process).
		if e.Field == event.FieldClientEnd || c.faulted[e.Client] || c.faulted[-1] {
			return
		}
	default:
		return
	}
	if e.Code == codes.OK || e.Code == codes.Canceled {
		return
	}
	if c.spec.Code != "" && metrics.CodeName(e.Code) != c.spec.Code {
		return
	}
	c.errs++
}

// tally counts one rate event at t into the window and its second.
func (c *checker) tally(t time.Duration) {
	if t < c.spec.From || (c.spec.To > 0 && t >= c.spec.To) {
		return
	}
	sec := int64((t - c.spec.From) / time.Second)
	for sec > c.sec {
		c.closeSecond()
	}
	c.count++
	c.secCount++
}

// closeSecond finishes the current whole second and starts the next.
func (c *checker) closeSecond() {
	floor := c.spec.Op == AtLeast || c.spec.Op == Above
	if !c.haveExt || (floor && c.secCount < c.extCnt) || (!floor && c.secCount > c.extCnt) {
		c.extSec, c.extCnt, c.haveExt = c.sec, c.secCount, true
	}
	c.sec++
	c.secCount = 0
}

// sample records one latency d observed at event time at.
func (c *checker) sample(at, d time.Duration) {
	_ = c.hist.RecordValue(min(max(d.Microseconds(), 1), c.hist.HighestTrackableValue()))
	if !c.slow && !c.spec.Op.holds(float64(d)/float64(time.Millisecond), c.spec.Bound) {
		c.slow, c.slowSentAt, c.slowLatency = true, at-d, d
	}
}

// value is the figure now and the samples behind it (0: nothing to judge).
func (c *checker) value() (float64, int64) {
	switch c.def.kind {
	case latency:
		n := c.hist.TotalCount()
		if n == 0 {
			return 0, 0
		}
		us := c.hist.Max()
		if c.def.q < 100 {
			us = c.hist.ValueAtQuantile(c.def.q)
		}
		return float64(us) / 1000, n
	case errorsKind:
		if !c.spec.Share {
			return float64(c.errs), c.ops
		}
		if c.ops == 0 {
			return 0, 0
		}
		return float64(c.errs) / float64(c.ops), c.ops
	}
	w := c.window()
	if w <= 0 {
		return 0, 0
	}
	return float64(c.count) / w.Seconds(), c.count
}

// window is the part of the role's active window the run covered.
func (c *checker) window() time.Duration {
	end := c.lastAt
	if c.spec.To > 0 && c.spec.To < end {
		end = c.spec.To
	}
	return end - c.spec.From
}

// evaluate judges the figure at event time at: it records the first
// crossing and the start of the current one, and whether the crossing
// counts live (enough samples, or a figure that cannot come back).
func (c *checker) evaluate(at time.Duration) {
	v, n := c.value()
	if n == 0 {
		return
	}
	if c.spec.Op.holds(v, c.spec.Bound) {
		c.beyond = false
		c.now = c.now && c.sticky
		return
	}
	here := crossing{ok: true, at: at, val: v, n: n}
	if !c.first.ok {
		c.first = here
	}
	if !c.beyond {
		c.beyond, c.since = true, here
	}
	c.now = c.now || c.sticky || n >= c.minLive
}

// Violations implements check.Live: 1 while the figure is beyond its bound
// (once enough samples came; for a max or an error count, from the first
// crossing on), else 0. Per-second rates are judged at the end only: 0.
func (c *checker) Violations() int {
	if c.live && c.now {
		return 1
	}
	return 0
}

// Verdict judges the whole run's figure against the bound; the evidence
// gives the figure, the bound and when it first crossed it.
func (c *checker) Verdict(context.Context, check.Env) check.Verdict {
	v := check.Verdict{Name: c.spec.Name(), Evidence: []check.Evidence{}}
	if c.def.kind == rate && c.spec.From+time.Duration(c.sec+1)*time.Second <= c.spec.From+c.window() {
		c.closeSecond() // the last second is whole: the window ends on it
	}
	val, n := c.value()
	if n == 0 && c.def.kind != rate {
		v.Status = check.NotMeasurable
		v.Summary = fmt.Sprintf("role %s had no %s to measure %s by", c.spec.Role, c.def.sample, c.what())
		return v
	}
	if c.def.kind == rate && c.window() <= 0 {
		v.Status = check.NotMeasurable
		v.Summary = fmt.Sprintf("the run ended before role %s's active window (from %s) began", c.spec.Role, c.spec.From)
		return v
	}
	if c.def.kind != rate {
		c.evaluate(c.lastAt) // the end is one more evaluation time
	}
	bound := fmt.Sprintf("%s %s", c.spec.Op, c.spec.boundText())
	figure := fmt.Sprintf("%s %s %s", c.spec.Role, c.what(), c.format(val))
	over := fmt.Sprintf("over %d %s", n, c.def.sample)
	if c.def.kind == errorsKind {
		over = fmt.Sprintf("%d over %d operations (sends and stream opens)", c.errs, c.ops)
	}
	if c.def.kind == rate {
		over = fmt.Sprintf("over %s of its active window (%d %s)", c.window().Round(time.Millisecond), n, c.def.sample)
	}
	if c.spec.Op.holds(val, c.spec.Bound) {
		v.Status = check.Pass
		v.Summary = fmt.Sprintf("%s, within %s, %s", figure, bound, over)
		if c.first.ok {
			v.Summary += fmt.Sprintf("; it crossed the bound at %s (%s over %d %s) and came back", at(c.first.at), c.format(c.first.val), c.first.n, c.def.sample)
		}
		return v
	}
	v.Status = check.Fail
	v.Summary = fmt.Sprintf("%s, beyond %s, %s", figure, bound, over)
	ev := check.Evidence{Scope: "role " + c.spec.Role}
	switch {
	case c.def.kind == rate:
		ev.At = c.lastAt
		ev.Detail = fmt.Sprintf("%s is %s, bound %s, mean %s", c.what(), c.format(val), bound, over)
		if c.haveExt {
			word := "slowest"
			if c.spec.Op == AtMost || c.spec.Op == Below {
				word = "fastest"
			}
			from := c.spec.From + time.Duration(c.extSec)*time.Second
			ev.At = from
			ev.Detail += fmt.Sprintf("; %s whole second %s..%s: %d/s", word, at(from), at(from+time.Second), c.extCnt)
		}
	case c.since.ok:
		ev.At = c.since.at
		ev.Detail = fmt.Sprintf("%s is %s at the end, bound %s, %s; beyond the bound since %s (%s over %d %s)",
			c.what(), c.format(val), bound, over, at(c.since.at), c.format(c.since.val), c.since.n, c.def.sample)
		if c.first.at != c.since.at {
			ev.Detail += fmt.Sprintf("; it first crossed it at %s (%s over %d %s) and came back before",
				at(c.first.at), c.format(c.first.val), c.first.n, c.def.sample)
		}
		if c.slow {
			ev.Detail += fmt.Sprintf("; the first sample beyond the bound began at %s and took %s",
				at(max(c.slowSentAt, 0)), c.format(float64(c.slowLatency)/float64(time.Millisecond)))
		}
	default:
		ev.At = c.lastAt
		ev.Detail = fmt.Sprintf("%s is %s at the end, bound %s, %s", c.what(), c.format(val), bound, over)
	}
	v.Add(ev)
	return v
}

// what names the figure: "delivery latency p99", "RESOURCE_EXHAUSTED
// errors".
func (c *checker) what() string {
	if c.def.kind == errorsKind {
		w := "errors"
		if c.spec.Code != "" {
			w = c.spec.Code + " errors"
		}
		if c.spec.Share {
			w += " share"
		}
		return w
	}
	return c.def.what
}

// format renders a figure in the metric's unit.
func (c *checker) format(v float64) string {
	switch c.def.kind {
	case latency:
		return (time.Duration(v * float64(time.Millisecond))).Round(10 * time.Microsecond).String()
	case rate:
		return fmt.Sprintf("%.1f/s", v)
	}
	if c.spec.Share {
		return fmt.Sprintf("%.3g%%", v*100)
	}
	return fmt.Sprintf("%d", int64(v))
}

// at renders an event time.
func at(d time.Duration) string { return d.Round(time.Millisecond).String() }
