package report

import (
	"fmt"
	"html"
	"math"
	"strings"

	"github.com/bidikit/bidikit/harness/result"
)

// markerStyle is how one marker kind looks: its colour, whether its line
// is dashed, and the words the page uses for it.
type markerStyle struct {
	color  string
	dashed bool
	word   string
}

// markerStyles by result.Marker kind; read-only. Role lines avoid these
// colours (rolePalette).
var markerStyles = map[string]markerStyle{
	result.MarkFault:         {"#e67e22", true, "fault"},
	result.MarkAttackStart:   {"#8e44ad", false, "attack starts"},
	result.MarkAttackStop:    {"#8e44ad", true, "attack stops"},
	result.MarkServerKill:    {"#111111", false, "server killed"},
	result.MarkServerRestart: {"#1e8449", false, "server restarted"},
	result.MarkViolation:     {"#d62728", false, "first violation"},
}

// styleOf is kind's style; an unknown kind (a newer result) is grey.
func styleOf(kind string) markerStyle {
	if s, ok := markerStyles[kind]; ok {
		return s
	}
	return markerStyle{"#777777", true, kind}
}

// markerTitle is a marker's hover text: number, time, kind and label, then
// its evidence on the next line.
func markerTitle(n int, m result.Marker) string {
	s := fmt.Sprintf("#%d at %.2fs — %s: %s", n, m.AtS, styleOf(m.Kind).word, m.Label)
	if m.Detail != "" {
		s += "\n" + m.Detail
	}
	return s
}

// markersSVG draws each marker as a vertical line over the plot (x from
// xs, between yt and yb) with a numbered badge at the top; badges that
// would overlap go to the next of maxBadgeRows rows. Each marker is one
// <g class="marker" data-kind=… data-n=…> whose <title> is the hover text;
// a wide transparent line makes it easy to hover.
func markersSVG(b *strings.Builder, ms []result.Marker, xs scale, yt, yb float64) {
	lastX := make([]float64, maxBadgeRows)
	for i := range lastX {
		lastX[i] = math.Inf(-1)
	}
	for i, m := range ms {
		n := i + 1
		st := styleOf(m.Kind)
		x := xs.px(m.AtS)
		row := 0
		for row < maxBadgeRows && x-lastX[row] < badgeW+2 {
			row++
		}
		if row == maxBadgeRows { // every row is crowded here: the one free longest
			row = 0
			for r := range lastX {
				if lastX[r] < lastX[row] {
					row = r
				}
			}
		}
		lastX[row] = x
		by := yt + 2 + float64(row)*(badgeH+2)
		dash, width := "", 2.0
		if st.dashed {
			dash, width = ` stroke-dasharray="5 3"`, 1.6
		}
		fmt.Fprintf(b, `<g class="marker" data-kind="%s" data-n="%d"><title>%s</title>`,
			html.EscapeString(m.Kind), n, html.EscapeString(markerTitle(n, m)))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="transparent" stroke-width="10"/>`, x, yt, x, yb)
		fmt.Fprintf(b, `<line class="mline" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"%s/>`, x, yt, x, yb, st.color, width, dash)
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.0f" height="%.0f" rx="3" fill="%s"/>`, x-badgeW/2, by, badgeW, badgeH, st.color)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" font-weight="bold" fill="#fff" text-anchor="middle">%d</text></g>`, x, by+10, n)
	}
}

// htmlMarker is one row of a scenario's marker table.
type htmlMarker struct {
	N                   int
	At, Word, Label     string
	Detail, Color, Kind string
}

func markerRows(ms []result.Marker) []htmlMarker {
	out := make([]htmlMarker, 0, len(ms))
	for i, m := range ms {
		st := styleOf(m.Kind)
		out = append(out, htmlMarker{N: i + 1, At: fmt.Sprintf("%.2f s", m.AtS), Word: st.word, Label: m.Label,
			Detail: m.Detail, Color: st.color, Kind: m.Kind})
	}
	return out
}
