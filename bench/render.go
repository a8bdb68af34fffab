package bench

import (
	"fmt"
	"html/template"
	"io"
	"sort"
	"text/tabwriter"
)

// Text writes results as a table, then each result's comparison, extras
// and notes.
func Text(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\ttool\tduration\tmsgs/s\tdeliv/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tsamples\t")
	for _, r := range rs {
		row(tw, r.Workload, r.Tool, r.DurationS, r.MessagesPerSec, r.DeliveriesPerSec, r.LatencyMS)
		if v := r.Vs; v != nil {
			row(tw, "  vs", v.Tool, v.DurationS, v.MessagesPerSec, v.DeliveriesPerSec, v.LatencyMS)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rs {
		if r.Vs != nil {
			fmt.Fprintf(w, "%s: %s / %s messages/s = %.2f", r.Workload, orDash(r.Tool), r.Vs.Tool, r.Vs.Ratio)
			if len(r.Rounds) > 0 {
				fmt.Fprintf(w, " over %d alternating rounds", len(r.Rounds))
			}
			fmt.Fprintln(w)
		}
		if r.LatencyOf != "" {
			fmt.Fprintf(w, "%s: latency is %s\n", r.Workload, r.LatencyOf)
		}
		var keys []string
		for k := range r.Extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s: %s = %.6g\n", r.Workload, k, r.Extra[k])
		}
		if len(r.Errors) > 0 {
			fmt.Fprintf(w, "%s: errors %v\n", r.Workload, r.Errors)
		}
		if r.ServerRSSBytes > 0 {
			fmt.Fprintf(w, "%s: server_rss %.1f MiB\n", r.Workload, float64(r.ServerRSSBytes)/(1<<20))
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "%s: %s\n", r.Workload, n)
		}
	}
	return nil
}

func row(w io.Writer, name, tool string, dur, mps, dps float64, l Latency) {
	fmt.Fprintf(w, "%s\t%s\t%.1fs\t%.0f\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t\n", name, orDash(tool), dur, mps,
		func() string {
			if dps == 0 {
				return "-"
			}
			return fmt.Sprintf("%.0f", dps)
		}(), l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// bar is one bar of an inline SVG chart.
type bar struct {
	Label string
	Value float64
	Y     int
	W     float64
	Text  string
}

// chart is a horizontal bar chart drawn as inline SVG.
type chart struct {
	Title  string
	Height int
	Bars   []bar
}

func newChart(title string, labels []string, values []float64, format string) chart {
	top := 0.0
	for _, v := range values {
		top = max(top, v)
	}
	c := chart{Title: title, Height: 24*len(values) + 8}
	for i, v := range values {
		w := 0.0
		if top > 0 {
			w = 460 * v / top
		}
		c.Bars = append(c.Bars, bar{Label: labels[i], Value: v, Y: 4 + 24*i, W: w, Text: fmt.Sprintf(format, v)})
	}
	return c
}

var htmlPage = template.Must(template.New("bench").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>bidikit bench</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}
th:first-child,td:first-child{text-align:left}svg text{font-size:12px}</style></head><body>
<h1>bidikit bench</h1>
<table><tr><th>workload</th><th>tool</th><th>duration s</th><th>messages/s</th><th>deliveries/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>ratio</th></tr>
{{range .Results}}<tr><td>{{.Workload}}</td><td>{{.Tool}}</td><td>{{printf "%.1f" .DurationS}}</td><td>{{printf "%.0f" .MessagesPerSec}}</td><td>{{printf "%.0f" .DeliveriesPerSec}}</td><td>{{printf "%.3f" .LatencyMS.P50}}</td><td>{{printf "%.3f" .LatencyMS.P90}}</td><td>{{printf "%.3f" .LatencyMS.P99}}</td><td>{{printf "%.3f" .LatencyMS.P999}}</td><td>{{printf "%.3f" .LatencyMS.Max}}</td><td>{{if .Vs}}{{printf "%.2f" .Vs.Ratio}} vs {{.Vs.Tool}}{{end}}</td></tr>
{{if .Vs}}<tr><td>&nbsp;&nbsp;vs</td><td>{{.Vs.Tool}}</td><td>{{printf "%.1f" .Vs.DurationS}}</td><td>{{printf "%.0f" .Vs.MessagesPerSec}}</td><td>{{printf "%.0f" .Vs.DeliveriesPerSec}}</td><td>{{printf "%.3f" .Vs.LatencyMS.P50}}</td><td>{{printf "%.3f" .Vs.LatencyMS.P90}}</td><td>{{printf "%.3f" .Vs.LatencyMS.P99}}</td><td>{{printf "%.3f" .Vs.LatencyMS.P999}}</td><td>{{printf "%.3f" .Vs.LatencyMS.Max}}</td><td></td></tr>{{end}}
{{end}}</table>
{{range .Charts}}<h2>{{.Title}}</h2>
<svg width="760" height="{{.Height}}" role="img" aria-label="{{.Title}}">{{range .Bars}}
<text x="0" y="{{.Y}}" dy="14">{{.Label}}</text><rect x="220" y="{{.Y}}" width="{{printf "%.1f" .W}}" height="18" fill="#4a7bd0"/><text x="{{printf "%.1f" .W}}" dx="226" y="{{.Y}}" dy="14">{{.Text}}</text>{{end}}
</svg>{{end}}
{{range .Results}}{{range .Notes}}<p>{{.}}</p>{{end}}{{end}}
</body></html>
`))

// HTML writes a self-contained page: the results table and inline SVG bar
// charts of throughput and latency percentiles (ours beside the comparison
// run's when there is one).
func HTML(w io.Writer, rs []Result) error {
	var labels []string
	var mps []float64
	for _, r := range rs {
		labels = append(labels, r.Workload+" "+r.Tool)
		mps = append(mps, r.MessagesPerSec)
		if r.Vs != nil {
			labels = append(labels, r.Workload+" "+r.Vs.Tool)
			mps = append(mps, r.Vs.MessagesPerSec)
		}
	}
	charts := []chart{newChart("messages per second", labels, mps, "%.0f/s")}
	for _, r := range rs {
		ls := []Latency{r.LatencyMS}
		names := []string{orDash(r.Tool)}
		if r.Vs != nil {
			ls = append(ls, r.Vs.LatencyMS)
			names = append(names, r.Vs.Tool)
		}
		var lab []string
		var val []float64
		for i, l := range ls {
			for _, q := range []struct {
				n string
				v float64
			}{{"p50", l.P50}, {"p90", l.P90}, {"p99", l.P99}, {"p99.9", l.P999}, {"max", l.Max}} {
				lab = append(lab, names[i]+" "+q.n)
				val = append(val, q.v)
			}
		}
		title := r.Workload + " latency (ms)"
		if r.LatencyOf != "" {
			title += ": " + r.LatencyOf
		}
		charts = append(charts, newChart(title, lab, val, "%.3f ms"))
	}
	return htmlPage.Execute(w, struct {
		Results []Result
		Charts  []chart
	}{rs, charts})
}
