package report_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/report"
	"github.com/bidikit/bidikit/harness/result"
)

// interruptedRun is a run stopped by a signal: one scenario judged on what
// it saw, one never started.
func interruptedRun() *result.Run {
	return &result.Run{Passed: false, Seed: 1, Target: "127.0.0.1:7000",
		Interrupted: "interrupted (interrupt signal received)",
		Scenarios: []result.Scenario{
			{Name: "chat-a", Service: "chat", Passed: false, DurationS: 3.2, Clients: 4, Errors: map[string]int{},
				Interrupted: "interrupted (interrupt signal received) at 3.2s of 30s; checks judged what was seen until then",
				Checks:      []check.Verdict{{Name: "total-order", Status: check.Pass, Summary: "one order"}}},
			{Name: "chat-b", Service: "chat", Errors: map[string]int{},
				Interrupted: "not run: the run was interrupted (interrupt signal received) before it started"},
		}}
}

func renderRun(format string, run *result.Run) string {
	var buf bytes.Buffer
	Expect(report.Write(&buf, format, run)).To(Succeed())
	return buf.String()
}

var _ = Describe("an interrupted run", func() {
	It("never passes, and its summary says it was interrupted before what the checks found", func() {
		run := interruptedRun()
		Expect(run.OK()).To(BeFalse())
		Expect(report.Summary(run)).To(Equal("INTERRUPTED: interrupted (interrupt signal received); 1 of 1 checks passed on what was seen; 1 of 2 scenarios not run"))
		Expect(report.ScenarioSummary(run.Scenarios[0])).To(HavePrefix("INTERRUPTED: interrupted (interrupt signal received) at 3.2s of 30s"))
	})

	It("names a scenario stopped by --fail-fast in a run that went on", func() {
		run := &result.Run{Passed: false, Scenarios: []result.Scenario{{Name: "s", Passed: false,
			Interrupted: "fail-fast: check no-gaps found its first violation at 1.5s of 10s",
			Checks:      []check.Verdict{{Name: "no-gaps", Status: check.Fail, Violations: 2, Summary: "2 gaps"}}}}}
		Expect(report.Summary(run)).To(Equal("INTERRUPTED: stopped early: s (fail-fast: check no-gaps found its first violation at 1.5s of 10s); 1 of 1 checks failed"))
	})

	It("is marked in the text report's table, figures and last line", func() {
		out := renderRun("text", interruptedRun())
		Expect(out).To(MatchRegexp(`chat-a\s+\(run\)\s+INTERRUPTED\s+-\s+interrupted \(interrupt signal received\) at 3.2s`))
		Expect(out).To(ContainSubstring("(INTERRUPTED: interrupted (interrupt signal received) at 3.2s"))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		Expect(lines[len(lines)-1]).To(HavePrefix("INTERRUPTED: "))
	})

	It("is marked in the JSON report, run and scenarios", func() {
		var doc struct {
			Passed      bool   `json:"passed"`
			Interrupted string `json:"interrupted"`
			Counts      struct {
				Interrupted int `json:"interrupted"`
			} `json:"counts"`
			Scenarios []struct {
				Interrupted string `json:"interrupted"`
				Passed      bool   `json:"passed"`
			} `json:"scenarios"`
		}
		Expect(json.Unmarshal([]byte(renderRun("json", interruptedRun())), &doc)).To(Succeed())
		Expect(doc.Passed).To(BeFalse())
		Expect(doc.Interrupted).To(Equal("interrupted (interrupt signal received)"))
		Expect(doc.Counts.Interrupted).To(Equal(2))
		Expect(doc.Scenarios).To(HaveLen(2))
		Expect(doc.Scenarios[0].Interrupted).To(ContainSubstring("at 3.2s of 30s"))
		Expect(doc.Scenarios[0].Passed).To(BeFalse())
		Expect(doc.Scenarios[1].Interrupted).To(HavePrefix("not run: "))
	})

	It("is an error test case per scenario in JUnit, with the reason", func() {
		var doc struct {
			Interrupted string `xml:"interrupted,attr"`
			Errors      int    `xml:"errors,attr"`
			Suites      []struct {
				Cases []struct {
					Name  string `xml:"name,attr"`
					Error *struct {
						Type    string `xml:"type,attr"`
						Message string `xml:"message,attr"`
					} `xml:"error"`
				} `xml:"testcase"`
			} `xml:"testsuite"`
		}
		Expect(xml.Unmarshal([]byte(renderRun("junit", interruptedRun())), &doc)).To(Succeed())
		Expect(doc.Interrupted).To(Equal("interrupted (interrupt signal received)"))
		Expect(doc.Errors).To(Equal(2))
		Expect(doc.Suites).To(HaveLen(2))
		Expect(doc.Suites[0].Cases[0].Name).To(Equal("interrupted"))
		Expect(doc.Suites[0].Cases[0].Error.Type).To(Equal("interrupted"))
		Expect(doc.Suites[0].Cases[1].Name).To(Equal("total-order"), "the checks judged on what was seen are kept")
	})

	It("is marked in the HTML heading, a banner and each scenario", func() {
		out := renderRun("html", interruptedRun())
		Expect(out).To(ContainSubstring(`<title>bidikit report — INTERRUPTED</title>`))
		Expect(out).To(ContainSubstring(`<span class="verdict interrupted">INTERRUPTED</span></h1>`))
		Expect(out).To(ContainSubstring(`<p class="interrupted" id="interrupted">This run was interrupted (interrupt signal received)`))
		Expect(out).To(ContainSubstring(`chat-a <span class="verdict interrupted">INTERRUPTED</span>`))
	})
})
