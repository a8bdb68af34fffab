package report

import (
	"fmt"
	"html"
	"math"
	"strings"

	"github.com/bidikit/bidikit/harness/result"
)

// line is one series of a time chart.
type line struct {
	// legend is its legend text ("honest p99"); role and stat go to its
	// data-role and data-stat attributes.
	legend, role, stat string
	color              string
	dashed             bool
	xs, ys             []float64
	// gaps: a y of 0 means "no sample in this interval" (latency
	// percentiles), drawn as a break in the line rather than a drop to 0.
	gaps bool
}

// timeChart is one chart over the run's time: lines and markers.
type timeChart struct {
	title, yTitle string
	// xmax is the run's end in seconds.
	xmax  float64
	lines []line
	// markers are numbered 1.. in this order (the scenario's markers).
	markers []result.Marker
	// allowLog lets the y axis be logarithmic (see newScale).
	allowLog bool
}

// Time chart geometry (px). The SVG scales down with the page (viewBox).
const (
	timeW, timeH      = 1000, 300
	tPadL, tPadR      = 64.0, 20.0
	tPadB             = 42.0
	legendRowH        = 16.0
	legendTop         = 26.0
	badgeW, badgeH    = 16.0, 13.0
	maxBadgeRows      = 4
	legendSwatchWidth = 22.0
)

// svg renders the chart: title, legend, y gridlines and ticks (linear or
// log), x ticks in seconds, the lines, then the markers on top, each a
// <g class="marker"> with a <title> (the hover text) and a numbered badge.
func (c timeChart) svg() string {
	var b strings.Builder
	legendRows := c.legendLayout(nil)
	padT := legendTop + float64(legendRows)*legendRowH + 6
	x0, x1 := tPadL, float64(timeW)-tPadR
	yb, yt := float64(timeH)-tPadB, padT
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="timechart" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		timeW, timeH, timeW, timeH, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<text x="%d" y="16" font-size="14" font-weight="bold" text-anchor="middle">%s</text>`, timeW/2, html.EscapeString(c.title))
	var vals []float64
	for _, l := range c.lines {
		vals = append(vals, l.ys...)
	}
	if len(c.lines) == 0 || c.xmax <= 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" text-anchor="middle" fill="#888">no data</text></svg>`, timeW/2, timeH/2)
		return b.String()
	}
	ys := newScale(vals, yb, yt, c.allowLog)
	xs := scale{lo: 0, hi: c.xmax, p0: x0, p1: x1}
	c.legendLayout(&b)

	// y grid and labels
	for _, t := range ys.ticks() {
		y := ys.px(t)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#e5e5e5"/>`, x0, y, x1, y)
		fmt.Fprintf(&b, `<text class="ytick" x="%.0f" y="%.1f" font-size="11" text-anchor="end">%s</text>`, x0-6, y+4, siNum(t))
	}
	yTitle := c.yTitle
	if ys.log {
		yTitle += ", log scale"
	}
	fmt.Fprintf(&b, `<text x="14" y="%.0f" font-size="11" transform="rotate(-90 14 %.0f)" text-anchor="middle">%s</text>`,
		(yb+yt)/2, (yb+yt)/2, html.EscapeString(yTitle))
	// x ticks: nice steps of seconds, at most eight over the run
	step := niceStep(c.xmax, 8)
	for i := 0; i <= 8; i++ {
		t := float64(i) * step
		if t > c.xmax*(1+1e-9) {
			break
		}
		x := xs.px(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#888"/>`, x, yb, x, yb+4)
		fmt.Fprintf(&b, `<text class="xtick" x="%.1f" y="%.0f" font-size="11" text-anchor="middle">%s</text>`, x, yb+16, siNum(t))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" font-size="11" text-anchor="middle">time since the run started (s)</text>`, (x0+x1)/2, timeH-6)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, x0, yb, x1, yb)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, x0, yb, x0, yt)

	for _, l := range c.lines {
		d := linePath(l, xs, ys)
		if d == "" {
			continue
		}
		dash := ""
		width := 2.0
		if l.dashed {
			dash, width = ` stroke-dasharray="6 4"`, 1.4
		}
		fmt.Fprintf(&b, `<path class="series" data-role="%s" data-stat="%s" fill="none" stroke="%s" stroke-width="%.1f" stroke-linejoin="round" stroke-linecap="round"%s d="%s"><title>%s</title></path>`,
			html.EscapeString(l.role), html.EscapeString(l.stat), l.color, width, dash, d, html.EscapeString(l.legend))
	}
	markersSVG(&b, c.markers, xs, yt, yb)
	b.WriteString("</svg>")
	return b.String()
}

// legendLayout places the legend entries in rows under the title, writing
// them to b when b is not nil, and returns how many rows they take.
func (c timeChart) legendLayout(b *strings.Builder) int {
	if len(c.lines) == 0 {
		return 0
	}
	x, row := tPadL, 0
	for _, l := range c.lines {
		w := legendSwatchWidth + 6 + 6.6*float64(len([]rune(l.legend))) + 16
		if x+w > float64(timeW)-tPadR && x > tPadL {
			x, row = tPadL, row+1
		}
		if b != nil {
			y := legendTop + float64(row)*legendRowH
			dash := ""
			if l.dashed {
				dash = ` stroke-dasharray="6 4"`
			}
			fmt.Fprintf(b, `<g class="legend"><line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="2"%s/><text x="%.0f" y="%.0f" font-size="11">%s</text></g>`,
				x, y+4, x+legendSwatchWidth, y+4, l.color, dash, x+legendSwatchWidth+6, y+8, html.EscapeString(l.legend))
		}
		x += w
	}
	return row + 1
}

// linePath is l's SVG path data, broken where l has no sample (gaps); an
// isolated sample is drawn as a dot.
func linePath(l line, xs, ys scale) string {
	var b strings.Builder
	open := 0 // points in the current sub-path
	for i := range l.ys {
		if i >= len(l.xs) {
			break
		}
		y := l.ys[i]
		if (l.gaps && y <= 0) || math.IsNaN(y) || math.IsInf(y, 0) {
			if open == 1 {
				b.WriteString("h0.1")
			}
			open = 0
			continue
		}
		cmd := "L"
		if open == 0 {
			cmd = "M"
		}
		fmt.Fprintf(&b, "%s%.1f %.1f", cmd, xs.px(l.xs[i]), ys.px(y))
		open++
	}
	if open == 1 {
		b.WriteString("h0.1")
	}
	return b.String()
}
