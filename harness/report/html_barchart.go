package report

import (
	"fmt"
	"html"
	"strings"

	"github.com/bidikit/bidikit/harness/result"
)

// Histogram geometry (px); two fit side by side on the page.
const (
	barW, barH   = 500, 270
	bPadL, bPadR = 58.0, 14.0
	bPadT, bPadB = 28.0, 70.0
)

// histogramSVG draws a role's latency distribution: one bar per bucket
// from the first to the last non-empty one, each labelled with its upper
// bound in ms (rotated, so labels never overlap; every second label when
// bars are narrow), count ticks in nice steps with k/M suffixes, both axes
// titled with their units, and a <title> per bar (bucket, count, share).
func histogramSVG(title, color string, buckets []result.Bucket) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="histogram" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		barW, barH, barW, barH, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="16" font-size="13" font-weight="bold" text-anchor="middle">%s</text>`, barW/2, html.EscapeString(title))
	first, last := -1, -1
	var total int64
	for i, bk := range buckets {
		if bk.Count > 0 {
			if first < 0 {
				first = i
			}
			last = i
			total += bk.Count
		}
	}
	if first < 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" text-anchor="middle" fill="#888">no latency samples</text></svg>`, barW/2, barH/2)
		return b.String()
	}
	bs := buckets[first : last+1]
	x0, x1 := bPadL, float64(barW)-bPadR
	yb, yt := float64(barH)-bPadB, bPadT
	var vals []float64
	for _, bk := range bs {
		vals = append(vals, float64(bk.Count))
	}
	ys := newScale(vals, yb, yt, false)
	for _, t := range ys.ticks() {
		y := ys.px(t)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#e5e5e5"/>`, x0, y, x1, y)
		fmt.Fprintf(&b, `<text class="ytick" x="%.0f" y="%.1f" font-size="11" text-anchor="end">%s</text>`, x0-6, y+4, siNum(t))
	}
	fmt.Fprintf(&b, `<text x="14" y="%.0f" font-size="11" transform="rotate(-90 14 %.0f)" text-anchor="middle">messages</text>`,
		(yb+yt)/2, (yb+yt)/2)
	slot := (x1 - x0) / float64(len(bs))
	every := 1
	if slot < 16 {
		every = 2
	}
	prevLE := 0.0
	if first > 0 {
		prevLE = buckets[first-1].LeMS
	}
	for i, bk := range bs {
		x := x0 + float64(i)*slot
		y := ys.px(float64(bk.Count))
		share := 100 * float64(bk.Count) / float64(total)
		fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s–%s ms: %s messages (%.1f%%)</title></rect>`,
			x+slot*0.1, y, slot*0.8, yb-y, color, trimFloat(prevLE), trimFloat(bk.LeMS), thousands(bk.Count), share)
		prevLE = bk.LeMS
		if i%every != 0 {
			continue
		}
		cx := x + slot/2
		fmt.Fprintf(&b, `<text class="xtick" x="%.1f" y="%.1f" font-size="10" text-anchor="end" transform="rotate(-45 %.1f %.1f)">≤%s</text>`,
			cx+3, yb+12, cx+3, yb+12, siNum(bk.LeMS))
	}
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, x0, yb, x1, yb)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, x0, yb, x0, yt)
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" font-size="11" text-anchor="middle">latency (ms), bucket upper bound</text>`, (x0+x1)/2, barH-6)
	b.WriteString("</svg>")
	return b.String()
}
