package metrics

import (
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/bidikit/bidikit/harness/result"
)

// interval is one closed or open timeline interval's raw counts.
type interval struct {
	start     time.Duration
	length    time.Duration
	sent      int64
	delivered int64
	errors    int64
	connected int
	p50, p99  float64 // ms, from the interval's histogram when closed
	samples   int64
}

// timeline keeps at most result.MaxTimeline closed intervals. When full, it
// merges neighbours pairwise and doubles the interval, so memory stays
// bounded however long the run. Latency percentiles come from one histogram
// reset every interval; merged intervals keep the larger p99 and a
// sample-weighted p50 (an approximation, marked by nothing: charts only).
type timeline struct {
	step   time.Duration
	closed []interval
	open   interval
	hist   *hdrhistogram.Histogram
}

func (t *timeline) init(step time.Duration) {
	t.step = step
	t.open = interval{start: 0, length: step}
	t.hist = NewHistogram()
	t.closed = make([]interval, 0, result.MaxTimeline)
}

func (t *timeline) cur() *interval { return &t.open }

// advance closes every interval that ends at or before at. Events that arrive
// late (at before the open interval) count in the open one.
func (t *timeline) advance(at time.Duration) {
	for at >= t.open.start+t.open.length {
		t.closeOpen()
	}
}

func (t *timeline) closeOpen() {
	iv := t.open
	iv.samples = t.hist.TotalCount()
	if iv.samples > 0 {
		iv.p50 = float64(t.hist.ValueAtQuantile(50)) / 1000
		iv.p99 = float64(t.hist.ValueAtQuantile(99)) / 1000
	}
	t.hist.Reset()
	t.closed = append(t.closed, iv)
	if len(t.closed) >= result.MaxTimeline {
		t.compact()
	}
	t.open = interval{start: iv.start + iv.length, length: t.step, connected: iv.connected}
}

// compact merges closed intervals pairwise and doubles the step.
func (t *timeline) compact() {
	n := 0
	for i := 0; i < len(t.closed); i += 2 {
		a := t.closed[i]
		if i+1 < len(t.closed) {
			b := t.closed[i+1]
			a.length += b.length
			a.sent += b.sent
			a.delivered += b.delivered
			a.errors += b.errors
			a.connected = b.connected
			if s := a.samples + b.samples; s > 0 {
				a.p50 = (a.p50*float64(a.samples) + b.p50*float64(b.samples)) / float64(s)
			}
			a.p99 = max(a.p99, b.p99)
			a.samples += b.samples
		}
		t.closed[n] = a
		n++
	}
	t.closed = t.closed[:n]
	t.step *= 2
	// The open interval keeps its start; it ends on the new grid.
	t.open.length = t.step
}

// close closes the open interval at the run's end (a partial interval).
func (t *timeline) close(at time.Duration) {
	if at > t.open.start {
		t.open.length = at - t.open.start
		t.closeOpen()
	}
}

func (t *timeline) points() []result.Point {
	out := make([]result.Point, 0, len(t.closed))
	for _, iv := range t.closed {
		secs := iv.length.Seconds()
		if secs <= 0 {
			continue
		}
		out = append(out, result.Point{
			AtS:             (iv.start + iv.length).Seconds(),
			SentPerSec:      float64(iv.sent) / secs,
			DeliveredPerSec: float64(iv.delivered) / secs,
			ErrorsPerSec:    float64(iv.errors) / secs,
			Connected:       iv.connected,
			P50MS:           iv.p50,
			P99MS:           iv.p99,
		})
	}
	return out
}
