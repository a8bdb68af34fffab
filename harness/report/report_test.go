package report_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/report"
	"github.com/bidikit/bidikit/harness/result"
)

// fixture is a fixed run: a passing chat scenario with a timeline and role
// distributions, a failing one with evidence and a not-measurable check,
// one that could not run, and one where nothing failed but a check was not
// measurable (which is not a pass).
func fixture() *result.Run {
	var timeline []result.Point
	for i := 1; i <= 10; i++ {
		f := float64(i)
		timeline = append(timeline, result.Point{AtS: f, SentPerSec: 100 * f, DeliveredPerSec: 95 * f,
			Connected: 50, P50MS: 1 + f/10, P99MS: 4 + f/2})
	}
	lat := result.Latency{P50: 1.25, P90: 3.5, P99: 7.75, P999: 12, Max: 40.5, Count: 9500}
	return &result.Run{
		Passed: false, Seed: 42, Target: "127.0.0.1:7000",
		StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Scenarios: []result.Scenario{
			{
				Name: "chat-basic", File: "scenarios/chat-basic.yaml", Service: "chat", Seed: 42, Passed: true,
				DurationS: 10, Clients: 50, Messages: result.Messages{Sent: 10000, Acked: 10000, Delivered: 9500},
				LatencyMS: lat, Errors: map[string]int{},
				Checks: []check.Verdict{
					{Name: "total-order", Status: check.Pass, Summary: "20 rooms, one order each"},
					{Name: "no-gaps", Status: check.Pass, Summary: "no gaps in 9500 deliveries"},
				},
				Roles: []result.Role{
					{Name: "honest", Behaviour: "chatter", Clients: 45, Messages: result.Messages{Sent: 9000, Delivered: 9000},
						LatencyMS: lat, ConnectMS: result.Latency{P99: 2.5}, FirstMessageMS: result.Latency{P99: 15},
						Distribution: []result.Bucket{{LeMS: 1, Count: 3000}, {LeMS: 2, Count: 4000}, {LeMS: 5, Count: 1800}, {LeMS: 10, Count: 200}}},
					{Name: "lurk", Behaviour: "lurker", Clients: 5, Messages: result.Messages{Delivered: 500},
						Distribution: []result.Bucket{{LeMS: 1, Count: 100}, {LeMS: 2.5, Count: 400}}},
				},
				Timeline: timeline,
			},
			{
				Name: "chat-flood", File: "scenarios/chat-flood.yaml", Service: "chat", Seed: 42, Passed: false,
				DurationS: 30, Clients: 510, Messages: result.Messages{Sent: 300000, Acked: 29000, Delivered: 28000},
				LatencyMS: result.Latency{P50: 2, P90: 9, P99: 150, P999: 900, Max: 2100, Count: 28000},
				Errors:    map[string]int{"RESOURCE_EXHAUSTED": 270000, "UNAVAILABLE": 3},
				Checks: []check.Verdict{
					{Name: "fairness", Status: check.Fail, Violations: 7, Summary: "honest p99 150 ms is 3.0x baseline (max 1.5x)",
						Evidence: []check.Evidence{
							{Scope: "room-3", Client: "honest-12", At: 10200 * time.Millisecond, Detail: "p99 150 ms over 50 ms"},
							{Scope: "room-4", Seq: 17, Client: "honest-<7>", At: 11 * time.Second, Detail: `waited "too" long & dropped`},
						}},
					{Name: "leaks", Status: check.NotMeasurable, Summary: "target exposes no admin endpoint"},
					{Name: "no-lost-acks", Status: check.Pass, Summary: "29000 acks all delivered"},
				},
			},
			{
				Name: "game-down", File: "scenarios/game-down.yaml", Service: "game", Seed: 7, Passed: false,
				Failure: "dial 127.0.0.1:7000: connection refused",
			},
			{
				Name: "chat-resume", File: "scenarios/chat-resume.yaml", Service: "chat", Seed: 42, Passed: false,
				DurationS: 5, Clients: 4, Messages: result.Messages{Sent: 40, Acked: 40, Delivered: 120},
				Errors: map[string]int{},
				Checks: []check.Verdict{
					{Name: "total-order", Status: check.Pass, Summary: "160 observations over 1 room agree on one order per room"},
					{Name: "resume-complete", Status: check.NotMeasurable, Summary: "no resume replayed anything: 2 resumes, none had missed messages"},
				},
			},
		},
	}
}

// finalLine is the text report's last line for fixture().
const finalLine = "FAILED: 1 of 7 checks failed, 2 not measurable: " +
	"chat-flood/leaks (target exposes no admin endpoint), " +
	"chat-resume/resume-complete (no resume replayed anything: 2 resumes, none had missed messages); " +
	"1 of 4 scenarios could not run: game-down (dial 127.0.0.1:7000: connection refused)"

var update = os.Getenv("BIDIKIT_UPDATE_GOLDEN") == "1"

func golden(name string, got []byte) {
	path := filepath.Join("..", "..", "testdata", "golden", name)
	if update {
		Expect(os.WriteFile(path, got, 0o644)).To(Succeed())
	}
	want, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred(), "missing golden file; run with BIDIKIT_UPDATE_GOLDEN=1")
	Expect(string(got)).To(Equal(string(want)), "output differs from %s; rerun with BIDIKIT_UPDATE_GOLDEN=1 after checking the change", path)
}

func render(format string) []byte {
	var buf bytes.Buffer
	Expect(report.Write(&buf, format, fixture())).To(Succeed())
	return buf.Bytes()
}

var _ = Describe("report", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() { Eventually(gleak.Goroutines).ShouldNot(gleak.HaveLeaked(baseline)) })
	})

	It("lists its formats and rejects an unknown one", func() {
		Expect(report.Formats()).To(Equal([]string{"html", "json", "junit", "markdown", "text"}))
		Expect(report.Write(&bytes.Buffer{}, "pdf", fixture())).To(MatchError(ContainSubstring(`unknown report format "pdf"`)))
		Expect(report.Write(&bytes.Buffer{}, "text", nil)).To(HaveOccurred())
	})

	DescribeTable("matches its golden file",
		func(format, file string) { golden(file, render(format)) },
		Entry(nil, "text", "report.txt"),
		Entry(nil, "json", "report.json"),
		Entry(nil, "junit", "report.xml"),
		Entry(nil, "html", "report.html"),
	)

	Describe("text", func() {
		It("aligns the verdict table, shows evidence of failed checks and ends with the verdict", func() {
			out := string(render("text"))
			Expect(out).NotTo(ContainSubstring("\x1b["), "no colour when not a terminal")
			lines := strings.Split(out, "\n")
			header := lines[0]
			Expect(header).To(MatchRegexp(`^SCENARIO\s+CHECK\s+STATUS\s+VIOLATIONS\s+SUMMARY$`))
			col := strings.Index(header, "STATUS")
			for _, l := range lines[1:9] {
				Expect(l[col:]).To(MatchRegexp(`^(PASS|FAIL|NOT MEASURABLE|ERROR)\s`), l)
			}
			Expect(lines[9]).To(BeEmpty(), "the table has one row per check and one per scenario that could not run")
			Expect(out).To(MatchRegexp(`chat-flood\s+leaks\s+NOT MEASURABLE\s+-\s+target exposes no admin endpoint`))
			Expect(out).To(MatchRegexp(`game-down\s+\(run\)\s+ERROR\s+-\s+could not run: dial 127.0.0.1:7000: connection refused`))
			Expect(out).To(ContainSubstring("game-down: could not run: dial 127.0.0.1:7000: connection refused"))
			Expect(out).To(ContainSubstring("chat-flood / fairness: 7 violation(s), first 2:"))
			Expect(out).To(ContainSubstring("scope=room-4 seq=17 client=honest-<7> at=11s"))
			Expect(out).To(ContainSubstring("errors: RESOURCE_EXHAUSTED=270000 UNAVAILABLE=3"))
			Expect(lines[len(lines)-2]).To(Equal(finalLine))
			Expect(lines[len(lines)-1]).To(BeEmpty())
		})

		It("colours statuses when asked and says PASSED for a passing run", func() {
			run := fixture()
			run.Passed = true
			run.Scenarios = run.Scenarios[:1]
			var buf bytes.Buffer
			Expect(report.TextOptions{Color: true}.Render(&buf, run)).To(Succeed())
			Expect(buf.String()).To(ContainSubstring("\x1b[32mPASS"))
			Expect(buf.String()).To(HaveSuffix("PASSED: 2 of 2 checks passed\x1b[0m\n"))
		})
	})

	Describe("the verdict line (Summary) shared by every format", func() {
		It("fails a run with a not-measurable check even when the run was marked passed, and names the reason", func() {
			run := fixture()
			run.Passed = true
			run.Scenarios = []result.Scenario{run.Scenarios[0]}
			run.Scenarios[0].Checks = append(run.Scenarios[0].Checks,
				check.Verdict{Name: "leaks", Status: check.NotMeasurable, Summary: "no goroutine figures:\n give --admin-url"})
			Expect(run.OK()).To(BeFalse())
			Expect(report.Summary(run)).To(Equal("FAILED: 1 of 3 checks not measurable: leaks (no goroutine figures: give --admin-url)"))
			Expect(report.ScenarioSummary(run.Scenarios[0])).To(Equal(report.Summary(run)))
			var buf bytes.Buffer
			Expect(report.TextOptions{Color: true}.Render(&buf, run)).To(Succeed())
			Expect(buf.String()).To(HaveSuffix("\x1b[1m\x1b[31m" + report.Summary(run) + "\x1b[0m\n"))
			Expect(buf.String()).To(ContainSubstring("\x1b[33mNOT MEASURABLE"))
		})

		It("says the issue's example in its words: failed and not measurable with reasons", func() {
			run := &result.Run{Passed: false, Scenarios: []result.Scenario{{Name: "s", Checks: []check.Verdict{
				{Name: "a", Status: check.Fail}, {Name: "b", Status: check.Fail}, {Name: "c", Status: check.Pass},
				{Name: "d", Status: check.Pass},
				{Name: "leaks", Status: check.NotMeasurable, Summary: "no goroutine figures: give --admin-url"},
			}}}}
			Expect(report.Summary(run)).To(Equal("FAILED: 2 of 5 checks failed, 1 not measurable: leaks (no goroutine figures: give --admin-url)"))
		})

		It("names at most five not-measurable checks and counts the rest", func() {
			sc := result.Scenario{Name: "s", Passed: false}
			for _, n := range []string{"a", "b", "c", "d", "e", "f", "g"} {
				sc.Checks = append(sc.Checks, check.Verdict{Name: n, Status: check.NotMeasurable})
			}
			Expect(report.Summary(&result.Run{Scenarios: []result.Scenario{sc}})).To(Equal(
				"FAILED: 7 of 7 checks not measurable: a (no reason given), b (no reason given), c (no reason given), " +
					"d (no reason given), e (no reason given) and 2 more"))
		})

		It("explains a run marked failed with no failed check", func() {
			run := &result.Run{Passed: false, Scenarios: []result.Scenario{{Name: "s", Passed: false,
				Checks: []check.Verdict{{Name: "a", Status: check.Pass}}}}}
			Expect(report.Summary(run)).To(Equal("FAILED: not passed without a failed check: s"))
			Expect(report.Summary(&result.Run{Passed: false})).To(Equal("FAILED: the run was marked failed"))
		})
	})

	Describe("json", func() {
		It("has every documented key, checks[].passed, and no nulls for lists", func() {
			var doc map[string]any
			Expect(json.Unmarshal(render("json"), &doc)).To(Succeed())
			Expect(doc).To(HaveKeyWithValue("passed", false))
			Expect(doc).To(HaveKeyWithValue("summary", finalLine))
			Expect(doc).To(HaveKeyWithValue("counts", map[string]any{"checks": 7.0, "passed": 4.0, "failed": 1.0,
				"not_measurable": 2.0, "scenarios": 4.0, "could_not_run": 1.0, "interrupted": 0.0}))
			Expect(doc).To(HaveKeyWithValue("seed", 42.0))
			Expect(doc).To(HaveKeyWithValue("target", "127.0.0.1:7000"))
			Expect(doc).To(HaveKey("started_at"))
			scenarios := doc["scenarios"].([]any)
			Expect(scenarios).To(HaveLen(4))
			for _, s := range scenarios {
				sc := s.(map[string]any)
				for _, k := range []string{"name", "file", "service", "seed", "passed", "summary", "counts", "duration_s", "clients",
					"messages", "latency_ms", "errors", "checks", "roles", "timeline"} {
					Expect(sc).To(HaveKey(k))
					Expect(sc[k]).NotTo(BeNil(), k)
				}
				Expect(sc["messages"]).To(HaveKey("sent"))
				Expect(sc["messages"]).To(HaveKey("delivered"))
				for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
					Expect(sc["latency_ms"]).To(HaveKey(k))
				}
			}
			flood := scenarios[1].(map[string]any)
			Expect(flood["errors"]).To(HaveKeyWithValue("RESOURCE_EXHAUSTED", 270000.0))
			checks := flood["checks"].([]any)
			for i, want := range []bool{false, false, true} {
				c := checks[i].(map[string]any)
				Expect(c).To(HaveKeyWithValue("passed", want))
				for _, k := range []string{"name", "status", "violations", "summary", "evidence"} {
					Expect(c).To(HaveKey(k))
					Expect(c[k]).NotTo(BeNil(), k)
				}
			}
			Expect(checks[0].(map[string]any)["evidence"]).To(HaveLen(2))
			Expect(scenarios[2]).To(HaveKeyWithValue("failure", "dial 127.0.0.1:7000: connection refused"))
			Expect(scenarios[2]).To(HaveKeyWithValue("summary", "FAILED: could not run: dial 127.0.0.1:7000: connection refused"))
			Expect(flood).To(HaveKeyWithValue("counts", map[string]any{"checks": 3.0, "passed": 1.0, "failed": 1.0, "not_measurable": 1.0}))
			Expect(flood).To(HaveKeyWithValue("summary", "FAILED: 1 of 3 checks failed, 1 not measurable: leaks (target exposes no admin endpoint)"))
			resume := scenarios[3].(map[string]any)
			Expect(resume).To(HaveKeyWithValue("passed", false), "nothing failed, one check not measurable: not a pass")
			Expect(resume).To(HaveKeyWithValue("counts", map[string]any{"checks": 2.0, "passed": 1.0, "failed": 0.0, "not_measurable": 1.0}))
			Expect(scenarios[0]).To(HaveKeyWithValue("passed", true))
			Expect(scenarios[0]).To(HaveKeyWithValue("summary", "PASSED: 2 of 2 checks passed"))
			Expect(render("json")).To(HavePrefix("{\n  \"passed\""), "indented by two spaces")
		})
	})

	Describe("junit", func() {
		type msg struct {
			Message string `xml:"message,attr"`
			Type    string `xml:"type,attr"`
			Body    string `xml:",chardata"`
		}
		type tc struct {
			Classname string `xml:"classname,attr"`
			Name      string `xml:"name,attr"`
			Failure   *msg   `xml:"failure"`
			Error     *msg   `xml:"error"`
			Skipped   *msg   `xml:"skipped"`
		}
		type suite struct {
			Name       string `xml:"name,attr"`
			Tests      int    `xml:"tests,attr"`
			Failures   int    `xml:"failures,attr"`
			Errors     int    `xml:"errors,attr"`
			Skipped    int    `xml:"skipped,attr"`
			Time       string `xml:"time,attr"`
			Properties []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			} `xml:"properties>property"`
			Cases     []tc   `xml:"testcase"`
			SystemOut string `xml:"system-out"`
		}
		type suites struct {
			XMLName  xml.Name `xml:"testsuites"`
			Tests    int      `xml:"tests,attr"`
			Failures int      `xml:"failures,attr"`
			Errors   int      `xml:"errors,attr"`
			Skipped  int      `xml:"skipped,attr"`
			Suites   []suite  `xml:"testsuite"`
		}

		It("parses and has the right counts, classnames, failures and errors", func() {
			var doc suites
			Expect(xml.Unmarshal(render("junit"), &doc)).To(Succeed())
			Expect(doc.Tests).To(Equal(8))
			Expect(doc.Failures).To(Equal(3), "one failed check and two not measurable")
			Expect(doc.Errors).To(Equal(1))
			Expect(doc.Skipped).To(Equal(0), "nothing is skipped: not measurable is never a pass nor neutral")
			Expect(doc.Suites).To(HaveLen(4))

			basic, flood, down, resume := doc.Suites[0], doc.Suites[1], doc.Suites[2], doc.Suites[3]
			Expect(basic.Name).To(Equal("chat-basic"))
			Expect([]int{basic.Tests, basic.Failures, basic.Errors, basic.Skipped}).To(Equal([]int{2, 0, 0, 0}))
			Expect(basic.Time).To(Equal("10.000"))
			Expect(basic.Properties).To(ContainElement(And(
				HaveField("Name", "seed"), HaveField("Value", "42"))))
			Expect(basic.Properties).To(ContainElement(And(
				HaveField("Name", "target"), HaveField("Value", "127.0.0.1:7000"))))
			Expect(basic.SystemOut).To(HavePrefix("PASSED: 2 of 2 checks passed\n"))

			Expect([]int{flood.Tests, flood.Failures, flood.Errors, flood.Skipped}).To(Equal([]int{3, 2, 0, 0}))
			Expect(flood.Cases[0]).To(And(HaveField("Classname", "chat-flood"), HaveField("Name", "fairness")))
			Expect(flood.Cases[0].Failure).To(HaveField("Type", "fail"))
			Expect(flood.Cases[1].Skipped).To(BeNil())
			Expect(flood.Cases[1].Failure).NotTo(BeNil(), "not measurable is a failure, never a pass or a skip")
			Expect(*flood.Cases[1].Failure).To(And(
				HaveField("Type", "not-measurable"),
				HaveField("Message", "not measurable: target exposes no admin endpoint"),
				HaveField("Body", ContainSubstring("never a pass"))))
			Expect(flood.Cases[2].Failure).To(BeNil())
			Expect(flood.Cases[2].Skipped).To(BeNil())
			Expect(flood.SystemOut).To(HavePrefix("FAILED: 1 of 3 checks failed, 1 not measurable: leaks (target exposes no admin endpoint)\n"))

			Expect([]int{down.Tests, down.Errors}).To(Equal([]int{1, 1}))
			Expect(down.Cases[0].Name).To(Equal("run"))
			Expect(*down.Cases[0].Error).To(And(
				HaveField("Type", "could-not-run"),
				HaveField("Message", "could not run: dial 127.0.0.1:7000: connection refused")))

			Expect([]int{resume.Tests, resume.Failures, resume.Errors, resume.Skipped}).To(Equal([]int{2, 1, 0, 0}))
			Expect(resume.Cases[1].Failure).To(HaveField("Type", "not-measurable"))
		})

		It("puts the evidence in the failure, safely quoted", func() {
			out := string(render("junit"))
			Expect(out).To(ContainSubstring(`<failure message="7 violation(s): honest p99 150 ms is 3.0x baseline (max 1.5x)" type="fail">`))
			var doc struct {
				Suites []struct {
					Cases []struct {
						Failure *struct {
							Body string `xml:",chardata"`
						} `xml:"failure"`
					} `xml:"testcase"`
				} `xml:"testsuite"`
			}
			Expect(xml.Unmarshal([]byte(out), &doc)).To(Succeed())
			Expect(doc.Suites[1].Cases[0].Failure.Body).To(Equal(
				"scope=room-3 client=honest-12 at=10.2s p99 150 ms over 50 ms\n" +
					"scope=room-4 seq=17 client=honest-<7> at=11s waited \"too\" long & dropped\n" +
					"... and 5 more\n"))
		})
	})
})
