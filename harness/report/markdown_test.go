package report_test

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/report"
	"github.com/bidikit/bidikit/harness/result"
)

// tableRows returns the lines of md that are table rows (start with "|").
func tableRows(md string) []string {
	var out []string
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "|") {
			out = append(out, l)
		}
	}
	return out
}

// cells counts a table row's cells: unescaped pipes minus one.
func cells(row string) int {
	n := 0
	for i := 0; i < len(row); i++ {
		switch row[i] {
		case '\\':
			i++
		case '|':
			n++
		}
	}
	return n - 1
}

var _ = Describe("markdown", func() {
	It("matches its golden file", func() {
		golden("report.md", render("markdown"))
	})

	It("heads with the run's verdict, tables scenarios and checks, and shows the evidence of what did not pass", func() {
		md := string(render("markdown"))
		Expect(md).To(HavePrefix("## ❌ bidikit: " + finalLine + "\n"))
		Expect(md).To(ContainSubstring("### Scenarios"))
		Expect(md).To(MatchRegexp(`\| chat-basic \| ✅ passed \| 2/2 \| 50 \| 10\.0 s \| 10000 \| 9500 \|`))
		Expect(md).To(ContainSubstring("| game-down | ❌ could not run: dial 127.0.0.1:7000: connection refused |"))
		Expect(md).To(ContainSubstring("| chat-flood | fairness | ❌ FAIL | 7 |"))
		Expect(md).To(ContainSubstring("| chat-flood | leaks | ⚠️ not measurable | - | target exposes no admin endpoint |"))
		Expect(md).To(ContainSubstring("**chat-flood / fairness** — ❌ FAIL, 7 violation(s)"))
		Expect(md).To(ContainSubstring("- scope=room-3 client=honest-12 at=10.2s p99 150 ms over 50 ms"))
		// Two pieces of evidence for seven violations: the rest is counted.
		Expect(md).To(ContainSubstring("- … and 5 more"))
		Expect(md).To(ContainSubstring("**chat-resume / resume-complete** — ⚠️ not measurable: no resume replayed anything"))
		// HTML in evidence is shown, not interpreted.
		Expect(md).To(ContainSubstring("client=honest-&lt;7&gt;"))
		Expect(md).NotTo(ContainSubstring("<7>"))
	})

	It("keeps every table row's cell count whatever the summaries hold", func() {
		run := fixture()
		run.Scenarios[0].Checks[0].Summary = "a | b\nc `d` <e>"
		var buf bytes.Buffer
		Expect(report.Markdown(&buf, run)).To(Succeed())
		rows := tableRows(buf.String())
		Expect(rows).NotTo(BeEmpty())
		for _, r := range rows {
			if strings.HasPrefix(r, "| scenario | check |") || strings.HasPrefix(r, "| --- | --- | --- | ---: |") {
				continue
			}
			if strings.Contains(r, "total-order") && strings.Contains(r, "chat-basic") {
				Expect(cells(r)).To(Equal(5), r)
			}
		}
		Expect(buf.String()).To(ContainSubstring(`a \| b c \` + "`" + `d\` + "`" + ` &lt;e&gt;`))
	})

	It("lists thresholds with what was measured", func() {
		run := &result.Run{Passed: false, Seed: 1, Target: "t", Scenarios: []result.Scenario{{
			Name: "s", Passed: false, Errors: map[string]int{},
			Checks: []check.Verdict{
				{Name: "total-order", Status: check.Pass, Summary: "ok"},
				{Name: "threshold honest p99 <= 50ms", Status: check.Fail, Violations: 1, Summary: "p99 was 180 ms (bound 50ms), beyond it from 3.2s",
					Evidence: []check.Evidence{{At: 3200 * time.Millisecond, Detail: "p99 180 ms > 50ms"}}},
			},
		}}}
		var buf bytes.Buffer
		Expect(report.Markdown(&buf, run)).To(Succeed())
		md := buf.String()
		Expect(md).To(ContainSubstring("### Thresholds"))
		Expect(md).To(ContainSubstring("| s | `honest p99 <= 50ms` | ❌ FAIL | p99 was 180 ms (bound 50ms), beyond it from 3.2s |"))
		// A threshold is not repeated in the checks table.
		Expect(md).NotTo(MatchRegexp(`\| s \| threshold honest`))
		Expect(md).To(ContainSubstring("- at=3.2s p99 180 ms &gt; 50ms"))
	})

	It("is bounded: evidence, sections and rows are cut and counted", func() {
		s := result.Scenario{Name: "big", Errors: map[string]int{}}
		for i := range 300 {
			v := check.Verdict{Name: fmt.Sprintf("c%03d", i), Status: check.Fail, Summary: strings.Repeat("x", 5000)}
			for j := range 30 {
				v.Add(check.Evidence{Seq: uint64(j + 1), Detail: strings.Repeat("y", 2000)})
			}
			s.Checks = append(s.Checks, v)
		}
		var buf bytes.Buffer
		Expect(report.Markdown(&buf, &result.Run{Scenarios: []result.Scenario{s}})).To(Succeed())
		md := buf.String()
		Expect(len(md)).To(BeNumerically("<", 256<<10), "well under GitHub's 1 MiB job-summary cut")
		Expect(md).To(ContainSubstring("| … | 100 more checks: see the JSON or JUnit report | | | |"))
		Expect(md).To(ContainSubstring("… and 280 more checks that did not pass"))
		Expect(md).To(ContainSubstring("- … and 25 more"))
		Expect(md).NotTo(ContainSubstring(strings.Repeat("x", 301)))
	})

	It("says PASSED with a check mark for a passing run", func() {
		run := &result.Run{Passed: true, Scenarios: []result.Scenario{{Name: "ok", Passed: true, Errors: map[string]int{},
			Checks: []check.Verdict{{Name: "no-gaps", Status: check.Pass, Summary: "none"}}}}}
		var buf bytes.Buffer
		Expect(report.Write(&buf, "markdown", run)).To(Succeed())
		Expect(buf.String()).To(HavePrefix("## ✅ bidikit: PASSED: 1 of 1 checks passed\n"))
		Expect(buf.String()).NotTo(ContainSubstring("What did not pass"))
	})
})
