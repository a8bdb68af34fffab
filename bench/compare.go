package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"text/tabwriter"
)

// Spread is a median with the smallest and largest sample.
type Spread struct {
	N                int
	Median, Min, Max float64
}

func spreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{N: len(s), Median: m, Min: s[0], Max: s[len(s)-1]}
}

// Delta compares one metric between the old and the new runs.
type Delta struct {
	Workload, Tool, Metric string
	Old, New               Spread
	// Change is (new median - old median) / old median.
	Change float64
	// Noise is true when the difference is within noise: the old and new
	// min..max ranges overlap, or |Change| is below the threshold.
	Noise bool
	// Better says whether the new runs are better (higher throughput, lower
	// latency) when the difference is not noise.
	Better bool
}

// Verdict is the word for d: "within noise", "better" or "worse".
func (d Delta) Verdict() string {
	switch {
	case d.Noise:
		return "within noise"
	case d.Better:
		return "better"
	}
	return "worse"
}

// compared metrics: name, value, and whether higher is better.
var comparedMetrics = []struct {
	name   string
	get    func(Result) float64
	higher bool
}{
	{"messages_per_sec", func(r Result) float64 { return r.MessagesPerSec }, true},
	{"deliveries_per_sec", func(r Result) float64 { return r.DeliveriesPerSec }, true},
	{"latency_p50_ms", func(r Result) float64 { return r.LatencyMS.P50 }, false},
	{"latency_p99_ms", func(r Result) float64 { return r.LatencyMS.P99 }, false},
}

// Compare groups the old and new results by workload and tool and compares
// each metric's median; threshold is the relative change below which a
// difference counts as noise even when the ranges do not overlap (e.g. 0.03).
// Metrics that are zero in every run of a group are skipped.
func Compare(old, new []Result, threshold float64) []Delta {
	type key struct{ w, t string }
	group := func(rs []Result) (map[key][]Result, []key) {
		m := map[key][]Result{}
		var order []key
		for _, r := range rs {
			k := key{r.Workload, r.Tool}
			if _, ok := m[k]; !ok {
				order = append(order, k)
			}
			m[k] = append(m[k], r)
		}
		return m, order
	}
	om, _ := group(old)
	nm, order := group(new)
	var out []Delta
	for _, k := range order {
		o, ok := om[k]
		if !ok {
			continue
		}
		for _, mt := range comparedMetrics {
			var ov, nv []float64
			for _, r := range o {
				ov = append(ov, mt.get(r))
			}
			for _, r := range nm[k] {
				nv = append(nv, mt.get(r))
			}
			os, ns := spreadOf(ov), spreadOf(nv)
			if os.Max == 0 && ns.Max == 0 {
				continue
			}
			d := Delta{Workload: k.w, Tool: k.t, Metric: mt.name, Old: os, New: ns}
			if os.Median != 0 {
				d.Change = (ns.Median - os.Median) / os.Median
			} else {
				d.Change = math.Inf(1)
			}
			overlap := ns.Min <= os.Max && os.Min <= ns.Max
			d.Noise = overlap || math.Abs(d.Change) < threshold
			d.Better = (ns.Median > os.Median) == mt.higher
			out = append(out, d)
		}
	}
	return out
}

// DeltaText writes deltas as a table.
func DeltaText(w io.Writer, ds []Delta) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\ttool\tmetric\told median [min..max] (n)\tnew median [min..max] (n)\tchange\tverdict")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%+.1f%%\t%s\n", d.Workload, orDash(d.Tool), d.Metric,
			fmtSpread(d.Old), fmtSpread(d.New), 100*d.Change, d.Verdict())
	}
	return tw.Flush()
}

func fmtSpread(s Spread) string {
	return fmt.Sprintf("%.4g [%.4g..%.4g] (%d)", s.Median, s.Min, s.Max, s.N)
}
