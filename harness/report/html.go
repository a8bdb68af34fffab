package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
)

// HTML renders one self-contained page: per scenario its figures, latency
// percentiles over time (p50 and p99 per role), throughput over time
// (sent and delivered per second per role), markers on both time axes
// (fault firings, attack start and stop, server kill and restart, the
// first violation of each failed check; their evidence on hover and in a
// table under the charts), a latency distribution per role and the verdict
// table with evidence. Charts are inline SVG generated here, so the page
// loads nothing from the network and needs no JavaScript. (go-echarts v2
// always loads echarts.min.js from an assets host — a CDN by default — and
// the module ships no copy to inline.)
func HTML(w io.Writer, run *result.Run) error {
	page := htmlPage{Run: run, OK: run.OK(), Verdict: Summary(run)}
	for i, s := range run.Scenarios {
		hs := htmlScenario{Scenario: s, ID: fmt.Sprintf("s%d", i), Verdict: ScenarioSummary(s)}
		hs.Badge, hs.BadgeClass = scenarioBadge(s)
		lat, thr := scenarioLines(s)
		xmax := chartEnd(s)
		hs.Latency = template.HTML(timeChart{title: "delivery latency over time (p99 solid, p50 dashed)", yTitle: "latency (ms)",
			xmax: xmax, lines: lat, markers: s.Markers, allowLog: true}.svg())
		hs.Throughput = template.HTML(timeChart{title: "throughput over time (sent solid, delivered dashed)", yTitle: "messages per second",
			xmax: xmax, lines: thr, markers: s.Markers, allowLog: true}.svg())
		hs.Markers = markerRows(s.Markers)
		for k, r := range s.Roles {
			hs.Roles = append(hs.Roles, htmlRole{Role: r, ID: fmt.Sprintf("%s-role%d", hs.ID, k),
				Chart: template.HTML(histogramSVG(fmt.Sprintf("%s (%s): latency distribution", r.Name, r.Behaviour), roleColor(k), r.Distribution))})
		}
		page.Scenarios = append(page.Scenarios, hs)
	}
	return pageTmpl.Execute(w, page)
}

// rolePalette colours roles in every chart of a scenario, by role index;
// it avoids the markers' colours (markerStyles).
var rolePalette = []string{"#1f77b4", "#bcbd22", "#8c564b", "#17becf", "#e377c2", "#393b79", "#7f7f7f", "#637939"}

func roleColor(i int) string { return rolePalette[i%len(rolePalette)] }

// scenarioLines are the latency lines (p99 solid, p50 dashed) and the
// throughput lines (sent/s solid, delivered/s dashed) of each role with a
// timeline and something to draw; the scenario's overall lines when no
// role has any (results without per-role timelines).
func scenarioLines(s result.Scenario) (lat, thr []line) {
	for k, r := range s.Roles {
		c := roleColor(k)
		lat = append(lat, pointLines(r.Name, c, r.Timeline)...)
		thr = append(thr, rateLines(r.Name, c, r.Timeline)...)
	}
	if len(lat) == 0 {
		lat = pointLines("all", "", s.Timeline)
	}
	if len(thr) == 0 {
		thr = rateLines("all", "", s.Timeline)
	}
	return lat, thr
}

// pointLines are role's p99 and p50 lines over tl; none when it has no
// latency sample. color "" picks the overall chart's colours.
func pointLines(role, color string, tl []result.Point) []line {
	xs, p50, p99 := make([]float64, len(tl)), make([]float64, len(tl)), make([]float64, len(tl))
	has := false
	for j, p := range tl {
		xs[j], p50[j], p99[j] = p.AtS, p.P50MS, p.P99MS
		has = has || p.P99MS > 0
	}
	if !has {
		return nil
	}
	c50, c99 := color, color
	if color == "" {
		c50, c99 = "#2b7bb9", "#d9534f"
	}
	return []line{
		{legend: role + " p99", role: role, stat: "p99", color: c99, xs: xs, ys: p99, gaps: true},
		{legend: role + " p50", role: role, stat: "p50", color: c50, dashed: true, xs: xs, ys: p50, gaps: true},
	}
}

// rateLines are role's sent/s and delivered/s lines over tl, each only
// when not zero throughout.
func rateLines(role, color string, tl []result.Point) []line {
	xs, sent, deliv := make([]float64, len(tl)), make([]float64, len(tl)), make([]float64, len(tl))
	anyS, anyD := false, false
	for j, p := range tl {
		xs[j], sent[j], deliv[j] = p.AtS, p.SentPerSec, p.DeliveredPerSec
		anyS, anyD = anyS || p.SentPerSec > 0, anyD || p.DeliveredPerSec > 0
	}
	cs, cd := color, color
	if color == "" {
		cs, cd = "#5cb85c", "#8e44ad"
	}
	var out []line
	if anyS {
		out = append(out, line{legend: role + " sent/s", role: role, stat: "sent", color: cs, xs: xs, ys: sent})
	}
	if anyD {
		out = append(out, line{legend: role + " delivered/s", role: role, stat: "delivered", color: cd, dashed: true, xs: xs, ys: deliv})
	}
	return out
}

// chartEnd is the time axes' end: the run's duration, or the last point or
// marker when later.
func chartEnd(s result.Scenario) float64 {
	end := s.DurationS
	if n := len(s.Timeline); n > 0 {
		end = math.Max(end, s.Timeline[n-1].AtS)
	}
	for _, m := range s.Markers {
		end = math.Max(end, m.AtS)
	}
	return end
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
	// Markers are the rows of the marker table, numbered as the badges.
	Markers []htmlMarker
	Roles   []htmlRole
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
	"errs":      ErrorsText,
	"startedAt": func(r *result.Run) string { return r.StartedAt.UTC().Format("2006-01-02 15:04:05 UTC") },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>bidikit report — {{if .OK}}PASSED{{else if .Run.Interrupted}}INTERRUPTED{{else}}FAILED{{end}}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1060px}
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
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.charts{display:flex;flex-wrap:wrap;gap:.8em}
.chart{border:1px solid #eee;padding:.3em;box-sizing:border-box}
.chart.wide{flex:1 1 100%}.chart svg{display:block;max-width:100%;height:auto}
.marker{cursor:help}.marker:hover .mline{stroke-width:4}
table.markers td.num{white-space:nowrap}
.mk{display:inline-block;min-width:1.4em;text-align:center;color:#fff;font-weight:bold;font-size:12px;border-radius:3px}
p.hint{color:#666;font-size:13px;margin:.2em 0}
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
<div class="chart wide" id="{{.ID}}-latency">{{.Latency}}</div>
<div class="chart wide" id="{{.ID}}-throughput">{{.Throughput}}</div>
</div>
{{- if .Markers}}
<p class="hint">Numbered lines on the time axes: hover one for its evidence, or read it below.</p>
<table class="markers" id="{{.ID}}-markers">
<tr><th>#</th><th>at</th><th>what</th><th>evidence</th></tr>
{{- range .Markers}}
<tr class="marker-row" data-kind="{{.Kind}}"><td><span class="mk" style="background:{{.Color}}">{{.N}}</span></td><td class="num">{{.At}}</td><td>{{.Word}}: {{.Label}}</td><td>{{.Detail}}</td></tr>
{{- end}}
</table>
{{- end}}
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

// trimFloat formats v compactly: integers without decimals, else up to 2.
func trimFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
