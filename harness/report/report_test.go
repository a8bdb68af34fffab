package report_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
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

// fixture is a fixed run: a passing chat scenario with a timeline and role
// distributions, a failing one with evidence and a not-measurable check,
// and one that could not run.
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
		},
	}
}

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
		Expect(report.Formats()).To(Equal([]string{"html", "json", "junit", "text"}))
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
			for _, l := range lines[1:7] {
				Expect(l[col:]).To(MatchRegexp(`^(PASS|FAIL|N/A|ERROR)\s`), l)
			}
			Expect(out).To(ContainSubstring("chat-flood / fairness: 7 violation(s), first 2:"))
			Expect(out).To(ContainSubstring("scope=room-4 seq=17 client=honest-<7> at=11s"))
			Expect(out).To(ContainSubstring("errors: RESOURCE_EXHAUSTED=270000 UNAVAILABLE=3"))
			Expect(strings.TrimSpace(lines[len(lines)-2])).To(Equal("FAILED (1 of 5 checks failed, 1 not measurable, 1 scenario(s) could not run)"))
		})

		It("colours statuses when asked and says PASSED for a passing run", func() {
			run := fixture()
			run.Passed = true
			run.Scenarios = run.Scenarios[:1]
			var buf bytes.Buffer
			Expect(report.TextOptions{Color: true}.Render(&buf, run)).To(Succeed())
			Expect(buf.String()).To(ContainSubstring("\x1b[32mPASS"))
			Expect(buf.String()).To(HaveSuffix("PASSED\x1b[0m\n"))
		})
	})

	Describe("json", func() {
		It("has every documented key, checks[].passed, and no nulls for lists", func() {
			var doc map[string]any
			Expect(json.Unmarshal(render("json"), &doc)).To(Succeed())
			Expect(doc).To(HaveKeyWithValue("passed", false))
			Expect(doc).To(HaveKeyWithValue("seed", 42.0))
			Expect(doc).To(HaveKeyWithValue("target", "127.0.0.1:7000"))
			Expect(doc).To(HaveKey("started_at"))
			scenarios := doc["scenarios"].([]any)
			Expect(scenarios).To(HaveLen(3))
			for _, s := range scenarios {
				sc := s.(map[string]any)
				for _, k := range []string{"name", "file", "service", "seed", "passed", "duration_s", "clients",
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
			Expect(render("json")).To(HavePrefix("{\n  \"passed\""), "indented by two spaces")
		})
	})

	Describe("junit", func() {
		type tc struct {
			Classname string    `xml:"classname,attr"`
			Name      string    `xml:"name,attr"`
			Failure   *struct{} `xml:"failure"`
			Error     *struct{} `xml:"error"`
			Skipped   *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
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
			Cases []tc `xml:"testcase"`
		}
		type suites struct {
			XMLName  xml.Name `xml:"testsuites"`
			Tests    int      `xml:"tests,attr"`
			Failures int      `xml:"failures,attr"`
			Errors   int      `xml:"errors,attr"`
			Skipped  int      `xml:"skipped,attr"`
			Suites   []suite  `xml:"testsuite"`
		}

		It("parses and has the right counts, classnames, failures and skips", func() {
			var doc suites
			Expect(xml.Unmarshal(render("junit"), &doc)).To(Succeed())
			Expect(doc.Tests).To(Equal(6))
			Expect(doc.Failures).To(Equal(1))
			Expect(doc.Errors).To(Equal(1))
			Expect(doc.Skipped).To(Equal(1))
			Expect(doc.Suites).To(HaveLen(3))

			basic, flood, down := doc.Suites[0], doc.Suites[1], doc.Suites[2]
			Expect(basic.Name).To(Equal("chat-basic"))
			Expect([]int{basic.Tests, basic.Failures, basic.Errors, basic.Skipped}).To(Equal([]int{2, 0, 0, 0}))
			Expect(basic.Time).To(Equal("10.000"))
			Expect(basic.Properties).To(ContainElement(And(
				HaveField("Name", "seed"), HaveField("Value", "42"))))
			Expect(basic.Properties).To(ContainElement(And(
				HaveField("Name", "target"), HaveField("Value", "127.0.0.1:7000"))))

			Expect([]int{flood.Tests, flood.Failures, flood.Errors, flood.Skipped}).To(Equal([]int{3, 1, 0, 1}))
			Expect(flood.Cases[0]).To(And(HaveField("Classname", "chat-flood"), HaveField("Name", "fairness")))
			Expect(flood.Cases[0].Failure).NotTo(BeNil())
			Expect(flood.Cases[1].Skipped).NotTo(BeNil(), "not measurable is skipped, never a pass")
			Expect(flood.Cases[1].Skipped.Message).To(ContainSubstring("target exposes no admin endpoint"))
			Expect(flood.Cases[2].Failure).To(BeNil())
			Expect(flood.Cases[2].Skipped).To(BeNil())

			Expect([]int{down.Tests, down.Errors}).To(Equal([]int{1, 1}))
			Expect(down.Cases[0].Error).NotTo(BeNil())
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

	Describe("html", func() {
		It("is one self-contained page with the charts' containers and the verdicts", func() {
			out := string(render("html"))
			Expect(out).To(HavePrefix("<!DOCTYPE html>"))
			for _, id := range []string{"s0-latency", "s0-throughput", "s0-role0-distribution", "s0-role1-distribution",
				"s1-latency", "s1-throughput", "verdicts"} {
				Expect(out).To(ContainSubstring(`id="`+id+`"`), id)
			}
			Expect(regexp.MustCompile(`(?i)<script[^>]*\bsrc=`).MatchString(out)).To(BeFalse(), "no external scripts")
			Expect(regexp.MustCompile(`(?i)<link[^>]*\bhref=`).MatchString(out)).To(BeFalse(), "no external styles")
			Expect(strings.Count(out, "<polyline")).To(Equal(4), "p50/p99 and sent/delivered lines of the scenario with a timeline")
			Expect(strings.Count(out, "<svg")).To(Equal(2*2+2), "no charts for the scenario that could not run")
			Expect(out).To(ContainSubstring("client=honest-&lt;7&gt;"), "evidence is escaped")
			Expect(out).To(ContainSubstring("could not run: dial 127.0.0.1:7000: connection refused"))
		})
	})
})
