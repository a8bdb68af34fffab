package report

import (
	"fmt"
	"math"
	"strings"
)

// scale maps data values to one pixel axis of an SVG chart: linear from 0,
// or logarithmic over whole decades when the positive values span more
// than logSpan (a flooder's 2,000 msg/s beside honest clients' 20, a 5 s
// p99 beside 2 ms). Values at or below a log scale's floor (0 included)
// sit on the axis. Immutable once built.
type scale struct {
	log    bool
	lo, hi float64 // data range: linear 0..hi; log lo..hi (powers of ten)
	p0, p1 float64 // pixels of lo and hi
}

// logSpan is the ratio of the largest to the smallest positive value above
// which a chart that allows it switches to a log scale.
const logSpan = 50

// newScale fits a scale to vals between pixels p0 (value lo) and p1 (hi);
// allowLog lets it choose a log scale.
func newScale(vals []float64, p0, p1 float64, allowLog bool) scale {
	maxV, minPos := 0.0, math.Inf(1)
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		maxV = math.Max(maxV, v)
		if v > 0 {
			minPos = math.Min(minPos, v)
		}
	}
	if allowLog && maxV > 0 && maxV/minPos > logSpan {
		lo := math.Pow(10, math.Floor(math.Log10(minPos)))
		hi := math.Pow(10, math.Ceil(math.Log10(maxV)))
		if hi <= lo {
			hi = lo * 10
		}
		return scale{log: true, lo: lo, hi: hi, p0: p0, p1: p1}
	}
	_, top := niceTicks(maxV)
	return scale{lo: 0, hi: top, p0: p0, p1: p1}
}

// px is v's pixel.
func (s scale) px(v float64) float64 {
	var f float64
	if s.log {
		if v <= s.lo {
			return s.p0
		}
		f = (math.Log10(v) - math.Log10(s.lo)) / (math.Log10(s.hi) - math.Log10(s.lo))
	} else {
		f = v / s.hi
	}
	f = math.Max(0, math.Min(1, f))
	return s.p0 + f*(s.p1-s.p0)
}

// ticks are the values to label: every decade of a log scale (every
// second one beyond six), or 0..hi in nice steps.
func (s scale) ticks() []float64 {
	if s.log {
		decades := int(math.Round(math.Log10(s.hi / s.lo)))
		every := 1
		if decades > 6 {
			every = 2
		}
		var out []float64
		for d := 0; d <= decades; d += every {
			out = append(out, s.lo*math.Pow(10, float64(d)))
		}
		return out
	}
	step, top := niceTicks(s.hi)
	var out []float64
	for i := 0; i <= 10 && float64(i)*step <= top*(1+1e-9); i++ {
		out = append(out, float64(i)*step)
	}
	return out
}

// niceTicks is a step of 1, 2, 2.5 or 5 times a power of ten that covers
// 0..max in at most five steps, and the top (a multiple of step >= max;
// 1 when max is not positive).
func niceTicks(max float64) (step, top float64) {
	if !(max > 0) || math.IsInf(max, 0) {
		return 0.25, 1
	}
	step = niceStep(max, 5)
	top = math.Ceil(max/step-1e-9) * step
	if top <= 0 {
		top = step
	}
	return step, top
}

// niceStep is the smallest of 1, 2, 2.5 and 5 times a power of ten that
// cuts span into at most n steps (span > 0).
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// siNum formats v for an axis: 0.25, 12, 1.5k, 2M.
func siNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return trimFloat(v/1e9) + "G"
	case a >= 1e6:
		return trimFloat(v/1e6) + "M"
	case a >= 1e3:
		return trimFloat(v/1e3) + "k"
	case a > 0 && a < 0.01:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", v), "0"), ".")
	}
	return trimFloat(v)
}

// thousands formats a count with thousands separators: 12,345.
func thousands(n int64) string {
	s := fmt.Sprintf("%d", n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
