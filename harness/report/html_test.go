package report_test

import (
	"bytes"
	"html/template"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/report"
	"github.com/bidikit/bidikit/harness/result"
)

// markedRun is fixture() with per-role timelines (an honest role, and a
// flooder active from 3s to 7s whose latency is three decades above the
// honest one's) and five markers on the first scenario.
func markedRun() *result.Run {
	run := fixture()
	s := &run.Scenarios[0]
	s.Roles = append(s.Roles, result.Role{Name: "flood", Behaviour: "flooder", Clients: 2,
		Distribution: []result.Bucket{{LeMS: 0.1}, {LeMS: 0.25}, {LeMS: 100, Count: 5}, {LeMS: 250, Count: 1500}, {LeMS: 500, Count: 12000}, {LeMS: 60000}}})
	for i := 1; i <= 10; i++ {
		f := float64(i)
		s.Roles[0].Timeline = append(s.Roles[0].Timeline, result.Point{AtS: f, SentPerSec: 90 * f, DeliveredPerSec: 90 * f, P50MS: 1 + f/10, P99MS: 4 + f/2})
		// the lurker has no latency sample at 5s: a gap, not a drop to 0
		lurk := result.Point{AtS: f, DeliveredPerSec: 5 * f, P50MS: 2, P99MS: 3}
		if i == 5 {
			lurk.P50MS, lurk.P99MS = 0, 0
		}
		s.Roles[1].Timeline = append(s.Roles[1].Timeline, lurk)
		fl := result.Point{AtS: f}
		if i >= 3 && i <= 7 {
			fl.SentPerSec, fl.P50MS, fl.P99MS = 2000, 800, 4000
		}
		s.Roles[2].Timeline = append(s.Roles[2].Timeline, fl)
	}
	s.Markers = []result.Marker{
		{AtS: 3, Kind: result.MarkAttackStart, Label: "flood", Detail: "role flood (flooder, 2 clients) started"},
		{AtS: 4, Kind: result.MarkFault, Label: "abrupt-close", Detail: "fault abrupt-close fired on 5 clients of role honest"},
		{AtS: 4.05, Kind: result.MarkViolation, Label: "no-gaps", Detail: `2 violations: 2 gaps — scope=room-<1> seq=7 "missing"`},
		{AtS: 7, Kind: result.MarkAttackStop, Label: "flood", Detail: "role flood (flooder): its last stream ended"},
		{AtS: 8, Kind: result.MarkServerKill, Label: "kill-server", Detail: "fault kill-server: SIGKILL of the spawned server"},
	}
	return run
}

// svgOf is the SVG inside the chart container id of out.
func svgOf(out, id string) string {
	i := strings.Index(out, `id="`+id+`"`)
	Expect(i).To(BeNumerically(">=", 0), "no element with id %q", id)
	j := strings.Index(out[i:], "</svg>")
	Expect(j).To(BeNumerically(">", 0), "no svg in %q", id)
	return out[i : i+j]
}

var _ = Describe("html", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() { Eventually(gleak.Goroutines).ShouldNot(gleak.HaveLeaked(baseline)) })
	})

	It("is one self-contained page with the charts' containers and the verdicts", func() {
		out := string(render("html"))
		Expect(out).To(HavePrefix("<!DOCTYPE html>"))
		for _, id := range []string{"s0-latency", "s0-throughput", "s0-role0-distribution", "s0-role1-distribution",
			"s1-latency", "s1-throughput", "verdicts"} {
			Expect(out).To(ContainSubstring(`id="`+id+`"`), id)
		}
		Expect(regexp.MustCompile(`(?i)<script[^>]*\bsrc=`).MatchString(out)).To(BeFalse(), "no external scripts")
		Expect(regexp.MustCompile(`(?i)<link[^>]*\bhref=`).MatchString(out)).To(BeFalse(), "no external styles")
		Expect(regexp.MustCompile(`(?i)\b(src|href)="https?:`).MatchString(out)).To(BeFalse(), "nothing fetched from the network")
		Expect(strings.Count(out, `<path class="series"`)).To(Equal(4),
			"without per-role timelines: the overall p50/p99 and sent/delivered lines of the scenario with a timeline")
		Expect(strings.Count(out, "<svg")).To(Equal(2*2+2+2), "no charts for the scenario that could not run")
		Expect(out).To(ContainSubstring("client=honest-&lt;7&gt;"), "evidence is escaped")
		Expect(out).To(ContainSubstring("could not run: dial 127.0.0.1:7000: connection refused"))
		Expect(out).NotTo(ContainSubstring(`class="marker"`), "no markers in a run without any")
	})

	It("shows the run's verdict line, and not measurable and could-not-run with their own badges and reasons", func() {
		out := string(render("html"))
		Expect(out).To(ContainSubstring("<title>bidikit report — FAILED</title>"))
		Expect(out).To(ContainSubstring(`<p class="summary" id="summary">` + template.HTMLEscapeString(finalLine) + `</p>`))
		Expect(out).To(MatchRegexp(`<tr class="notmeasurable"><td>chat-flood</td><td>leaks</td><td><span class="badge notmeasurable">NOT MEASURABLE</span></td><td class="num">-</td><td>not measurable: target exposes no admin endpoint`))
		Expect(out).To(ContainSubstring(`<span class="badge couldnotrun">COULD NOT RUN</span>`))
		Expect(out).To(ContainSubstring(`chat-resume <span class="verdict notmeasurable">NOT MEASURABLE</span></h2>`))
		Expect(out).To(ContainSubstring(`game-down <span class="verdict couldnotrun">COULD NOT RUN</span></h2>`))
		Expect(out).To(ContainSubstring(`chat-basic <span class="verdict passed">PASSED</span></h2>`))
		Expect(out).To(MatchRegexp(`\.badge\.notmeasurable\{background:#[0-9a-f]{6}\}`), "a colour of its own")

		run := fixture()
		run.Passed = true
		run.Scenarios = run.Scenarios[3:]
		run.Scenarios[0].Passed = true
		var buf bytes.Buffer
		Expect(report.Write(&buf, "html", run)).To(Succeed())
		Expect(buf.String()).To(ContainSubstring(`bidikit report <span class="verdict failed">FAILED</span>`), "a run marked passed with a not-measurable check")
	})

	It("draws p99 and p50 per role, and sent and delivered per role, leaving out what a role has none of", func() {
		out := renderRun("html", markedRun())
		lat, thr := svgOf(out, "s0-latency"), svgOf(out, "s0-throughput")
		for _, role := range []string{"honest", "lurk", "flood"} {
			for _, stat := range []string{"p99", "p50"} {
				Expect(lat).To(ContainSubstring(`<path class="series" data-role="`+role+`" data-stat="`+stat+`"`), role+" "+stat)
			}
		}
		Expect(strings.Count(lat, `<path class="series"`)).To(Equal(6))
		Expect(thr).To(ContainSubstring(`data-role="honest" data-stat="sent"`))
		Expect(thr).To(ContainSubstring(`data-role="honest" data-stat="delivered"`))
		Expect(thr).To(ContainSubstring(`data-role="flood" data-stat="sent"`))
		Expect(thr).NotTo(ContainSubstring(`data-role="flood" data-stat="delivered"`), "the flooder received nothing")
		Expect(thr).NotTo(ContainSubstring(`data-role="lurk" data-stat="sent"`), "the lurker sent nothing")
		Expect(strings.Count(thr, `<path class="series"`)).To(Equal(4))
		Expect(lat).To(ContainSubstring("latency (ms), log scale"), "the flooder's seconds beside the honest milliseconds")
		Expect(thr).To(ContainSubstring("messages per second, log scale"))
		Expect(lat).To(ContainSubstring(`<g class="legend">`))

		lurkP99 := regexp.MustCompile(`data-role="lurk" data-stat="p99"[^>]* d="([^"]*)"`).FindStringSubmatch(lat)
		Expect(lurkP99).To(HaveLen(2))
		Expect(strings.Count(lurkP99[1], "M")).To(Equal(2), "no sample at 5s breaks the line: %s", lurkP99[1])
	})

	It("puts every marker on both time axes with its evidence on hover, and lists them under the charts", func() {
		out := renderRun("html", markedRun())
		for _, id := range []string{"s0-latency", "s0-throughput"} {
			svg := svgOf(out, id)
			Expect(strings.Count(svg, `<g class="marker"`)).To(Equal(5), id)
			for _, kind := range []string{"attack-start", "fault", "violation", "attack-stop", "server-kill"} {
				Expect(svg).To(ContainSubstring(`<g class="marker" data-kind="`+kind+`"`), id+" "+kind)
			}
			Expect(svg).To(ContainSubstring("<title>#3 at 4.05s — first violation: no-gaps\n2 violations: 2 gaps — scope=room-&lt;1&gt; seq=7 &#34;missing&#34;</title>"),
				"the evidence, escaped, is the hover text")
		}
		Expect(svgOf(out, "s1-latency")).NotTo(ContainSubstring(`class="marker"`), "markers belong to their scenario")

		// Markers 2 (4s) and 3 (4.05s) are 5px apart: their badges are on two rows.
		badgeY := regexp.MustCompile(`(?s)data-n="(\d)">.*?<rect x="[\d.]+" y="([\d.]+)"`)
		ys := map[string]string{}
		for _, m := range badgeY.FindAllStringSubmatch(svgOf(out, "s0-latency"), -1) {
			ys[m[1]] = m[2]
		}
		Expect(ys).To(HaveLen(5))
		Expect(ys["3"]).NotTo(Equal(ys["2"]), "close markers' badges do not overlap")
		Expect(ys["1"]).To(Equal(ys["2"]))

		Expect(out).To(ContainSubstring(`id="s0-markers"`))
		Expect(strings.Count(out, `<tr class="marker-row"`)).To(Equal(5))
		Expect(out).To(MatchRegexp(`<tr class="marker-row" data-kind="server-kill"><td><span class="mk" style="background:#[0-9a-f]{6}">5</span></td><td class="num">8.00 s</td><td>server killed: kill-server</td><td>fault kill-server: SIGKILL of the spawned server</td></tr>`))
	})

	It("keeps histogram axes readable: only the buckets in use, rotated labels with units, thousands as k", func() {
		out := renderRun("html", markedRun())
		h := svgOf(out, "s0-role2-distribution")
		labels := regexp.MustCompile(`<text class="xtick"[^>]*transform="rotate\(-45[^>]*>([^<]*)</text>`).FindAllStringSubmatch(h, -1)
		var got []string
		for _, l := range labels {
			got = append(got, l[1])
		}
		Expect(got).To(Equal([]string{"≤100", "≤250", "≤500"}), "empty buckets at either end are left out")
		Expect(h).To(ContainSubstring("latency (ms), bucket upper bound"))
		Expect(h).To(ContainSubstring(">10k</text>"), "count ticks with k")
		Expect(h).To(ContainSubstring("<title>250–500 ms: 12,000 messages (88.9%)</title>"))

		// 17 buckets (all metrics makes) keep every label; 30 get every second one.
		run := markedRun()
		var many []result.Bucket
		for i := range 17 {
			many = append(many, result.Bucket{LeMS: float64(i + 1), Count: int64(10 * (i + 1))})
		}
		run.Scenarios[0].Roles[2].Distribution = many
		h = svgOf(renderRun("html", run), "s0-role2-distribution")
		Expect(strings.Count(h, `<rect class="bar"`)).To(Equal(17))
		Expect(strings.Count(h, `<text class="xtick"`)).To(Equal(17))
		for i := 17; i < 30; i++ {
			many = append(many, result.Bucket{LeMS: float64(i + 1), Count: 5})
		}
		run.Scenarios[0].Roles[2].Distribution = many
		h = svgOf(renderRun("html", run), "s0-role2-distribution")
		Expect(strings.Count(h, `<rect class="bar"`)).To(Equal(30))
		Expect(strings.Count(h, `<text class="xtick"`)).To(Equal(15))
	})

	It("says no data rather than drawing an empty frame", func() {
		run := markedRun()
		s := &run.Scenarios[0]
		s.Timeline, s.DurationS, s.Markers = nil, 0, nil
		for i := range s.Roles {
			s.Roles[i].Timeline, s.Roles[i].Distribution = nil, nil
		}
		out := renderRun("html", run)
		Expect(svgOf(out, "s0-latency")).To(ContainSubstring("no data"))
		Expect(svgOf(out, "s0-role0-distribution")).To(ContainSubstring("no latency samples"))
	})

	It("marks a failed check's first violation as the engine records it", func() {
		s := result.Scenario{Name: "x", DurationS: 6, Timeline: []result.Point{{AtS: 6, SentPerSec: 1}},
			Checks: []check.Verdict{{Name: "no-gaps", Status: check.Fail, Violations: 1, Summary: "1 gap",
				Evidence: []check.Evidence{{Scope: "room-1", Seq: 4, At: 2500 * time.Millisecond, Detail: "seq 4 missing"}}}}}
		s.MarkViolations(nil)
		out := renderRun("html", &result.Run{Scenarios: []result.Scenario{s}})
		Expect(svgOf(out, "s0-throughput")).To(ContainSubstring("<title>#1 at 2.50s — first violation: no-gaps\n1 violation: 1 gap — scope=room-1 seq=4 seq 4 missing</title>"))
	})
})
