package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchmath"
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

// Tests Compare can use, by the name `bench compare --test` takes.
const (
	// TTest is Welch's two-sample t-test (benchmath.AssumeNormal): it can
	// call a difference significant from 3 runs per side.
	TTest = "t"
	// UTest is the Mann-Whitney U-test (benchmath.AssumeNothing,
	// benchstat's): no assumption about the distribution, but with 3 runs
	// per side its smallest possible p is 0.1, so at alpha 0.05 it needs 4.
	UTest = "u"
)

// MinRuns is the fewest runs per side Compare judges from; with fewer it
// says it cannot judge rather than call one run's noise a change.
const MinRuns = 3

// CompareOptions configures Compare; zero fields get the defaults.
type CompareOptions struct {
	// Test is TTest (default) or UTest.
	Test string
	// Alpha is the significance level: a p-value below it is a
	// significant difference (default 0.05).
	Alpha float64
	// Noise is the relative change of the medians below which even a
	// significant difference is reported as negligible (0 = none).
	Noise float64
}

func (o CompareOptions) withDefaults() CompareOptions {
	if o.Test == "" {
		o.Test = TTest
	}
	if o.Alpha <= 0 {
		o.Alpha = 0.05
	}
	return o
}

// assumption is the benchmath assumption behind o.Test.
func (o CompareOptions) assumption() benchmath.Assumption {
	if o.Test == UTest {
		return benchmath.AssumeNothing
	}
	return benchmath.AssumeNormal
}

// Delta compares one metric between the old and the new runs.
type Delta struct {
	Workload, Tool, Metric string
	Old, New               Spread
	// Change is (new median - old median) / old median.
	Change float64
	// Judged is false when a side has fewer than MinRuns runs: then P and
	// the rest mean nothing.
	Judged bool
	// P is the test's p-value (the chance of a difference at least this
	// large between runs of one and the same code); Alpha the level it is
	// held against; Test which test ran.
	P, Alpha float64
	Test     string
	// Significant is P < Alpha; Negligible that the change is under the
	// noise threshold even so.
	Significant, Negligible bool
	// Better says whether the new runs are better (higher throughput, lower
	// latency); meaningful only when Significant.
	Better bool
	// Warnings are the test's own caveats (too few runs for the U-test, no
	// spread at all for the t-test).
	Warnings []string
}

// Verdict is the word for d, with the p-value: "better (p=0.004)", "worse
// (p=0.010)", "no significant difference (p=0.430)", "negligible: +1.2%
// (p=0.020)", or "cannot judge: 1 vs 3 runs (need 3 per side)".
func (d Delta) Verdict() string {
	switch {
	case !d.Judged:
		return fmt.Sprintf("cannot judge: %d vs %d runs (need %d per side)", d.Old.N, d.New.N, MinRuns)
	case !d.Significant:
		return fmt.Sprintf("no significant difference (p=%.3f)", d.P)
	case d.Negligible:
		return fmt.Sprintf("negligible: %+.1f%% (p=%.3f)", 100*d.Change, d.P)
	case d.Better:
		return fmt.Sprintf("better (p=%.3f)", d.P)
	}
	return fmt.Sprintf("worse (p=%.3f)", d.P)
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

// Compare groups the old and new results by workload and tool and tests
// each metric for a difference between the two sets of runs with
// golang.org/x/perf/benchmath (o.Test at level o.Alpha). A side with fewer
// than MinRuns runs is not judged. Metrics that are zero in every run of a
// group are skipped.
func Compare(old, new []Result, o CompareOptions) []Delta {
	o = o.withDefaults()
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
	thresholds := &benchmath.Thresholds{CompareAlpha: o.Alpha}
	var out []Delta
	for _, k := range order {
		or, ok := om[k]
		if !ok {
			continue
		}
		for _, mt := range comparedMetrics {
			var ov, nv []float64
			for _, r := range or {
				ov = append(ov, mt.get(r))
			}
			for _, r := range nm[k] {
				nv = append(nv, mt.get(r))
			}
			os, ns := spreadOf(ov), spreadOf(nv)
			if os.Max == 0 && ns.Max == 0 {
				continue
			}
			d := Delta{Workload: k.w, Tool: k.t, Metric: mt.name, Old: os, New: ns, Alpha: o.Alpha, Test: o.Test}
			if os.Median != 0 {
				d.Change = (ns.Median - os.Median) / os.Median
			} else {
				d.Change = math.Inf(1)
			}
			d.Better = (ns.Median > os.Median) == mt.higher
			if os.N >= MinRuns && ns.N >= MinRuns {
				c := o.assumption().Compare(benchmath.NewSample(ov, thresholds), benchmath.NewSample(nv, thresholds))
				d.Judged, d.P = true, c.P
				d.Significant = c.P < o.Alpha
				d.Negligible = math.Abs(d.Change) < o.Noise
				for _, w := range c.Warnings {
					d.Warnings = append(d.Warnings, w.Error())
				}
			}
			out = append(out, d)
		}
	}
	return out
}

// DeltaText writes deltas as a table, then the tests' caveats once each.
func DeltaText(w io.Writer, ds []Delta) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\ttool\tmetric\told median [min..max] (n)\tnew median [min..max] (n)\tchange\tverdict")
	var notes []string
	seen := map[string]bool{}
	test, alpha := "", 0.0
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%+.1f%%\t%s\n", d.Workload, orDash(d.Tool), d.Metric,
			fmtSpread(d.Old), fmtSpread(d.New), 100*d.Change, d.Verdict())
		for _, n := range d.Warnings {
			if !seen[n] {
				seen[n] = true
				notes = append(notes, n)
			}
		}
		if d.Judged {
			test, alpha = d.Test, d.Alpha
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if test != "" {
		name := "Welch's t-test"
		if test == UTest {
			name = "the Mann-Whitney U-test"
		}
		if _, err := fmt.Fprintf(w, "significance: %s (golang.org/x/perf/benchmath), alpha %.3g\n", name, alpha); err != nil {
			return err
		}
	}
	if len(notes) > 0 {
		_, err := fmt.Fprintf(w, "note: %s\n", strings.Join(notes, "; "))
		return err
	}
	return nil
}

func fmtSpread(s Spread) string {
	return fmt.Sprintf("%.4g [%.4g..%.4g] (%d)", s.Median, s.Min, s.Max, s.N)
}
