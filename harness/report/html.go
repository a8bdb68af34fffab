package report

import (
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"strings"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
)

// HTML renders one self-contained page: per scenario its figures, latency
// percentiles over time (p50/p99), throughput over time (sent/delivered per
// second), a latency distribution per role and the verdict table with
// evidence. Charts are inline SVG generated here, so the page loads nothing
// from the network and needs no JavaScript. (go-echarts v2 always loads
// echarts.min.js from an assets host — a CDN by default — and the module
// ships no copy to inline.)
func HTML(w io.Writer, run *result.Run) error {
	page := htmlPage{Run: run, OK: run.OK(), Verdict: Summary(run)}
	for i, s := range run.Scenarios {
		hs := htmlScenario{Scenario: s, ID: fmt.Sprintf("s%d", i), Verdict: ScenarioSummary(s)}
		hs.Badge, hs.BadgeClass = scenarioBadge(s)
		xs := make([]float64, len(s.Timeline))
		p50, p99 := make([]float64, len(s.Timeline)), make([]float64, len(s.Timeline))
		sent, deliv := make([]float64, len(s.Timeline)), make([]float64, len(s.Timeline))
		for j, p := range s.Timeline {
			xs[j], p50[j], p99[j], sent[j], deliv[j] = p.AtS, p.P50MS, p.P99MS, p.SentPerSec, p.DeliveredPerSec
		}
		hs.Latency = template.HTML(lineChart("latency percentiles over time", "ms", xs,
			[]series{{"p50", "#2b7bb9", p50}, {"p99", "#d9534f", p99}}))
		hs.Throughput = template.HTML(lineChart("throughput over time", "messages/s", xs,
			[]series{{"sent/s", "#5cb85c", sent}, {"delivered/s", "#8e44ad", deliv}}))
		for k, r := range s.Roles {
			labels := make([]string, len(r.Distribution))
			vals := make([]float64, len(r.Distribution))
			for b, bk := range r.Distribution {
				labels[b] = "≤" + trimFloat(bk.LeMS)
				vals[b] = float64(bk.Count)
			}
			hs.Roles = append(hs.Roles, htmlRole{Role: r, ID: fmt.Sprintf("%s-role%d", hs.ID, k),
				Chart: template.HTML(barChart(fmt.Sprintf("%s (%s): latency distribution", r.Name, r.Behaviour), "ms", labels, vals))})
		}
		page.Scenarios = append(page.Scenarios, hs)
	}
	return pageTmpl.Execute(w, page)
}

type htmlPage struct {
	Run *result.Run
	// OK and Verdict are result.Run.OK and Summary: the page's heading.
	OK        bool
	Verdict   string
	Scenarios []htmlScenario
}

type htmlScenario struct {
	result.Scenario
	ID string
	// Badge and BadgeClass label the scenario's heading (scenarioBadge);
	// Verdict is its ScenarioSummary line.
	Badge, BadgeClass   string
	Verdict             string
	Latency, Throughput template.HTML
	Roles               []htmlRole
}

// scenarioBadge is the word and CSS class of a scenario's heading badge:
// could not run, interrupted (a signal, --fail-fast: its checks judged what
// was seen), failed (a check failed), not measurable (nothing failed but a
// check could not look: still not a pass), or passed.
func scenarioBadge(s result.Scenario) (word, class string) {
	c := s.Counts()
	switch {
	case s.Failure != "":
		return "COULD NOT RUN", "couldnotrun"
	case s.Interrupted != "":
		return "INTERRUPTED", "interrupted"
	case s.OK():
		return "PASSED", "passed"
	case c.Failed == 0 && c.NotMeasurable > 0:
		return "NOT MEASURABLE", "notmeasurable"
	}
	return "FAILED", "failed"
}

type htmlRole struct {
	result.Role
	ID    string
	Chart template.HTML
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"status":    func(s check.Status) string { return statusWord(s) },
	"class":     func(s check.Status) string { return strings.ReplaceAll(string(s), "-", "") },
	"ms":        fmtMS,
	"at":        fmtAt,
	"errs":      errorsText,
	"startedAt": func(r *result.Run) string { return r.StartedAt.UTC().Format("2006-01-02 15:04:05 UTC") },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>bidikit report — {{if .OK}}PASSED{{else if .Run.Interrupted}}INTERRUPTED{{else}}FAILED{{end}}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.verdict{font-weight:bold;padding:.2em .6em;border-radius:4px;color:#fff}
.verdict.passed{background:#3c9a3c}.verdict.failed{background:#c9302c}
.verdict.notmeasurable{background:#b86e00}.verdict.couldnotrun{background:#6f2c91}.verdict.interrupted{background:#555}
.interrupted{background:#eee;border:1px solid #555;padding:.6em}
.badge{font-weight:bold;font-size:12px;padding:.1em .4em;border-radius:3px;color:#fff;white-space:nowrap}
.badge.pass{background:#3c9a3c}.badge.fail{background:#c9302c}.badge.notmeasurable{background:#b86e00}.badge.couldnotrun{background:#6f2c91}.badge.interrupted{background:#555}
tr.notmeasurable td{background:#fff4e0} tr.fail td,tr.couldnotrun td{background:#fbeaea}
p.summary{font-weight:bold}
table{border-collapse:collapse;margin:.8em 0}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top;font-size:14px}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:1em}
.chart{border:1px solid #eee;padding:.4em}
ul.evidence{margin:.3em 0;padding-left:1.2em;font-family:ui-monospace,monospace;font-size:12px}
.failure{background:#fbeaea;border:1px solid #c9302c;padding:.6em}
.meta{color:#666}
</style>
</head>
<body>
<h1>bidikit report <span class="verdict {{if .OK}}passed">PASSED{{else if .Run.Interrupted}}interrupted">INTERRUPTED{{else}}failed">FAILED{{end}}</span></h1>
<p class="summary" id="summary">{{.Verdict}}</p>
{{- if .Run.Interrupted}}
<p class="interrupted" id="interrupted">This run was {{.Run.Interrupted}}: the checks judged only what was seen until then, and scenarios not yet started did not run.</p>
{{- end}}
<p class="meta">seed {{.Run.Seed}} · target {{if .Run.Target}}{{.Run.Target}}{{else}}-{{end}} · started {{startedAt .Run}}</p>
<table id="verdicts">
<tr><th>scenario</th><th>check</th><th>status</th><th>violations</th><th>summary</th></tr>
{{- range .Scenarios}}{{$s := .}}
{{- if .Failure}}
<tr class="couldnotrun"><td>{{$s.Name}}</td><td>(run)</td><td><span class="badge couldnotrun">COULD NOT RUN</span></td><td class="num">-</td><td>could not run: {{.Failure}}</td></tr>
{{- end}}
{{- if .Interrupted}}
<tr class="interrupted"><td>{{$s.Name}}</td><td>(run)</td><td><span class="badge interrupted">INTERRUPTED</span></td><td class="num">-</td><td>{{.Interrupted}}</td></tr>
{{- end}}
{{- range .Checks}}
<tr class="{{class .Status}}"><td>{{$s.Name}}</td><td>{{.Name}}</td><td><span class="badge {{class .Status}}">{{status .Status}}</span></td><td class="num">{{if eq .Status "not-measurable"}}-{{else}}{{.Violations}}{{end}}</td><td>{{if eq .Status "not-measurable"}}not measurable: {{end}}{{.Summary}}
{{- if .Evidence}}
<ul class="evidence">
{{- range .Evidence}}
<li>{{if .Scope}}scope={{.Scope}} {{end}}{{if .Seq}}seq={{.Seq}} {{end}}{{if .Client}}client={{.Client}} {{end}}{{if .At}}at={{at .At}} {{end}}{{.Detail}}</li>
{{- end}}
</ul>
{{- end}}</td></tr>
{{- end}}
{{- end}}
</table>
{{range .Scenarios}}
<h2 id="{{.ID}}">{{.Name}} <span class="verdict {{.BadgeClass}}">{{.Badge}}</span></h2>
<p class="meta">{{.Service}} · {{.File}} · seed {{.Seed}} · {{printf "%.1f" .DurationS}} s · {{.Clients}} clients</p>
<p class="summary">{{.Verdict}}</p>
{{- if .Interrupted}}
<p class="interrupted">{{.Interrupted}}</p>
{{- end}}
{{- if .Failure}}
<p class="failure">could not run: {{.Failure}}</p>
{{- else}}
<table class="figures">
<tr><th>sent</th><th>acked</th><th>delivered</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>errors</th></tr>
<tr><td class="num">{{.Messages.Sent}}</td><td class="num">{{.Messages.Acked}}</td><td class="num">{{.Messages.Delivered}}</td><td class="num">{{ms .LatencyMS.P50}}</td><td class="num">{{ms .LatencyMS.P90}}</td><td class="num">{{ms .LatencyMS.P99}}</td><td class="num">{{ms .LatencyMS.P999}}</td><td class="num">{{ms .LatencyMS.Max}}</td><td>{{errs .Errors}}</td></tr>
</table>
<div class="charts">
<div class="chart" id="{{.ID}}-latency">{{.Latency}}</div>
<div class="chart" id="{{.ID}}-throughput">{{.Throughput}}</div>
</div>
{{- if .Roles}}
<table class="roles">
<tr><th>role</th><th>behaviour</th><th>clients</th><th>sent</th><th>delivered</th><th>p50</th><th>p99</th><th>connect p99</th><th>first message p99</th></tr>
{{- range .Roles}}
<tr><td>{{.Name}}</td><td>{{.Behaviour}}</td><td class="num">{{.Clients}}</td><td class="num">{{.Messages.Sent}}</td><td class="num">{{.Messages.Delivered}}</td><td class="num">{{ms .LatencyMS.P50}}</td><td class="num">{{ms .LatencyMS.P99}}</td><td class="num">{{ms .ConnectMS.P99}}</td><td class="num">{{ms .FirstMessageMS.P99}}</td></tr>
{{- end}}
</table>
<div class="charts">
{{- range .Roles}}
<div class="chart" id="{{.ID}}-distribution">{{.Chart}}</div>
{{- end}}
</div>
{{- end}}
{{- end}}
{{end}}
</body>
</html>
`

// series is one line of a line chart.
type series struct {
	name, color string
	ys          []float64
}

const (
	chartW, chartH                 = 520, 260
	padL, padR, padT, padB float64 = 56, 16, 28, 44
)

// lineChart draws series over xs (seconds) as an SVG line chart.
func lineChart(title, unit string, xs []float64, ss []series) string {
	var b strings.Builder
	svgOpen(&b, title)
	if len(xs) == 0 {
		noData(&b)
		b.WriteString("</svg>")
		return b.String()
	}
	xmax := xs[len(xs)-1]
	if xmax <= 0 {
		xmax = 1
	}
	ymax := 0.0
	for _, s := range ss {
		for _, y := range s.ys {
			ymax = math.Max(ymax, y)
		}
	}
	ymax = niceCeil(ymax)
	px := func(x float64) float64 { return padL + x/xmax*(chartW-padL-padR) }
	py := func(y float64) float64 { return chartH - padB - y/ymax*(chartH-padT-padB) }
	axes(&b, ymax, unit, func(i int) (float64, string) {
		x := xmax * float64(i) / 4
		return px(x), trimFloat(x) + "s"
	})
	for k, s := range ss {
		var pts []string
		for i, y := range s.ys {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(xs[i]), py(y)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"><title>%s</title></polyline>`,
			s.color, strings.Join(pts, " "), html.EscapeString(s.name))
		lx := padL + 8 + float64(k)*110
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="12" height="3" fill="%s"/><text x="%.0f" y="%.0f" font-size="11">%s</text>`,
			lx, float64(chartH)-12, s.color, lx+16, float64(chartH)-8, html.EscapeString(s.name))
	}
	b.WriteString("</svg>")
	return b.String()
}

// barChart draws one bar per label as an SVG bar chart.
func barChart(title, unit string, labels []string, vals []float64) string {
	var b strings.Builder
	svgOpen(&b, title)
	if len(vals) == 0 {
		noData(&b)
		b.WriteString("</svg>")
		return b.String()
	}
	ymax := 0.0
	for _, v := range vals {
		ymax = math.Max(ymax, v)
	}
	ymax = niceCeil(ymax)
	slot := (chartW - padL - padR) / float64(len(vals))
	py := func(y float64) float64 { return chartH - padB - y/ymax*(chartH-padT-padB) }
	axes(&b, ymax, "count", nil)
	for i, v := range vals {
		x := padL + float64(i)*slot
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#2b7bb9"><title>%s %s: %s</title></rect>`,
			x+slot*0.1, py(v), slot*0.8, py(0)-py(v), html.EscapeString(labels[i]), unit, trimFloat(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="10" text-anchor="middle">%s</text>`,
			x+slot/2, float64(chartH)-padB+14, html.EscapeString(labels[i]))
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="middle">latency (%s)</text>`,
		padL+(chartW-padL-padR)/2, float64(chartH)-8, unit)
	b.WriteString("</svg>")
	return b.String()
}

func svgOpen(b *strings.Builder, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(b, `<text x="%d" y="16" font-size="13" font-weight="bold" text-anchor="middle">%s</text>`, chartW/2, html.EscapeString(title))
}

func noData(b *strings.Builder) {
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="12" text-anchor="middle" fill="#888">no data</text>`, chartW/2, chartH/2)
}

// axes draws the frame, five y gridlines labelled 0..ymax, and, when xtick
// is given, five x ticks.
func axes(b *strings.Builder, ymax float64, unit string, xtick func(i int) (float64, string)) {
	x0, x1 := padL, float64(chartW)-padR
	y0, y1 := float64(chartH)-padB, padT
	for i := 0; i <= 4; i++ {
		y := y0 - float64(i)/4*(y0-y1)
		fmt.Fprintf(b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#e5e5e5"/>`, x0, y, x1, y)
		fmt.Fprintf(b, `<text x="%.0f" y="%.1f" font-size="10" text-anchor="end">%s</text>`, x0-4, y+3, trimFloat(ymax*float64(i)/4))
	}
	fmt.Fprintf(b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, x0, y0, x1, y0)
	fmt.Fprintf(b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#888"/>`, x0, y0, x0, y1)
	fmt.Fprintf(b, `<text x="12" y="%.0f" font-size="10" transform="rotate(-90 12 %.0f)" text-anchor="middle">%s</text>`,
		(y0+y1)/2, (y0+y1)/2, html.EscapeString(unit))
	if xtick == nil {
		return
	}
	for i := 0; i <= 4; i++ {
		x, label := xtick(i)
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" font-size="10" text-anchor="middle">%s</text>`, x, y0+14, label)
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if !(v > 0) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// trimFloat formats v compactly: integers without decimals, else up to 2.
func trimFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
