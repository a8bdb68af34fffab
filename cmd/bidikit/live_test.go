package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
)

// longScenario runs for a minute unless something stops it.
const longScenario = `name: long
service: chat
duration: 60s
settle: 0s
roles:
  - {name: chatter, count: 3, behaviour: chatter, rate: 10/s}
thresholds:
  chatter: {p99: 10s, errors: 0}
checks: [total-order, no-gaps]
`

var _ = Describe("bidikit run's live output and interrupts", func() {
	var dir string
	BeforeEach(func() { dir = GinkgoT().TempDir() })

	It("prints plain progress lines outside a terminal: a start line, one per interval with the live figures, the verdict", func(ctx SpecContext) {
		Expect(os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(tinyScenario), 0o644)).To(Succeed())
		code, stdout, stderr := runBidikit(ctx, dir, "run", "--progress-interval", "500ms", "tiny.yaml")
		Expect(code).To(Equal(0), "stdout: %s\nstderr: %s", stdout, stderr)
		Expect(stderr).To(ContainSubstring("[tiny] start: 2 clients for 2s (tiny.yaml)\n"))
		Expect(stderr).To(MatchRegexp(`\[tiny\] running [0-9.]+s/2s  clients \d+/2  sent \d+/s  delivered \d+/s  p99 \S+  errors none  violated none\n`))
		Expect(stderr).To(MatchRegexp(`\[tiny\] done in [0-9.]+s: PASSED: 2 of 2 checks passed\n`))
		Expect(stdout).To(ContainSubstring("PASSED: 2 of 2 checks passed"), "the report still goes to stdout")
		Expect(stdout).NotTo(ContainSubstring("[tiny]"), "progress stays off stdout")
	}, SpecTimeout(time.Minute))

	It("rejects a progress interval that is not positive", func(ctx SpecContext) {
		code, _, stderr := runBidikit(ctx, dir, "run", "--progress-interval", "0s")
		Expect(code).To(Equal(2))
		Expect(stderr).To(ContainSubstring("--progress-interval 0s must be positive"))
	}, SpecTimeout(time.Minute))

	It("with --fail-fast ends a scenario at its first live violation and names it", func(ctx SpecContext) {
		Expect(os.WriteFile(filepath.Join(dir, "long.yaml"), []byte(regexp.MustCompile(`p99: 10s`).ReplaceAllString(longScenario, "p90: 1us")), 0o644)).To(Succeed())
		code, stdout, stderr := runBidikit(ctx, dir, "run", "--fail-fast", "--report", "json", "--out", "r.json", "long.yaml")
		Expect(code).To(Equal(1), "stdout: %s\nstderr: %s", stdout, stderr)
		Expect(stderr).To(MatchRegexp(`\[long\] VIOLATION at [0-9.]+s: threshold chatter p90 <= 1us \(1, first at [0-9.]+s\)`))
		var doc struct {
			Scenarios []struct {
				Interrupted string  `json:"interrupted"`
				DurationS   float64 `json:"duration_s"`
			} `json:"scenarios"`
		}
		data, err := os.ReadFile(filepath.Join(dir, "r.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(data, &doc)).To(Succeed())
		Expect(doc.Scenarios[0].Interrupted).To(HavePrefix("fail-fast: check threshold chatter p90 <= 1us found its first violation at "))
		Expect(doc.Scenarios[0].DurationS).To(BeNumerically("<", 60), "it did not run its minute")
	}, SpecTimeout(time.Minute))

	It("on SIGINT stops the clients, judges what was seen and writes every requested report marked interrupted, exit 1", func(ctx SpecContext) {
		Expect(os.WriteFile(filepath.Join(dir, "long.yaml"), []byte(longScenario), 0o644)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(tinyScenario), 0o644)).To(Succeed())
		cmd := exec.CommandContext(ctx, bidikitBin, "run", "--progress-interval", "200ms",
			"--report", "json", "--out", "r.json", "--report", "junit", "--out", "r.xml",
			"--report", "html", "--out", "r.html", "--report", "text", "long.yaml", "tiny.yaml")
		cmd.Dir = dir
		stdout, stderr := gbytes.NewBuffer(), gbytes.NewBuffer()
		cmd.Stdout, cmd.Stderr = stdout, stderr
		Expect(cmd.Start()).To(Succeed())
		done := make(chan struct{})
		var waitErr error // Wait's result, set before done closes
		go func() {
			waitErr = cmd.Wait()
			close(done)
		}()
		DeferCleanup(func() {
			_ = cmd.Process.Kill()
			<-done
		})
		// Once messages flow, interrupt.
		Eventually(stderr).WithTimeout(30 * time.Second).Should(gbytes.Say(`\[long\] running [0-9.]+s/1m0s  clients 3/3  sent [1-9]\d*/s`))
		Expect(cmd.Process.Signal(syscall.SIGINT)).To(Succeed())
		Eventually(done).WithTimeout(30 * time.Second).Should(BeClosed())
		var ee *exec.ExitError
		Expect(waitErr).To(BeAssignableToTypeOf(ee), "stderr: %s", stderr.Contents())
		Expect(waitErr.(*exec.ExitError).ExitCode()).To(Equal(1), "stderr: %s", stderr.Contents())
		Expect(string(stderr.Contents())).To(ContainSubstring("bidikit: interrupted (interrupt signal received): the reports hold what was judged until then"))
		Expect(string(stdout.Contents())).To(MatchRegexp(`(?m)^INTERRUPTED: interrupted \(interrupt signal received\); 4 of 4 checks passed on what was seen; 1 of 2 scenarios not run$`))

		// JSON: complete, marked interrupted, every check judged.
		var doc struct {
			Passed      bool   `json:"passed"`
			Interrupted string `json:"interrupted"`
			Scenarios   []struct {
				Name        string `json:"name"`
				Interrupted string `json:"interrupted"`
				Checks      []struct {
					Name   string `json:"name"`
					Status string `json:"status"`
				} `json:"checks"`
				Messages struct {
					Sent int64 `json:"sent"`
				} `json:"messages"`
			} `json:"scenarios"`
		}
		data, err := os.ReadFile(filepath.Join(dir, "r.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(data, &doc)).To(Succeed())
		Expect(doc.Passed).To(BeFalse())
		Expect(doc.Interrupted).To(Equal("interrupted (interrupt signal received)"))
		Expect(doc.Scenarios).To(HaveLen(2))
		long, tiny := doc.Scenarios[0], doc.Scenarios[1]
		Expect(long.Interrupted).To(MatchRegexp(`^interrupted \(interrupt signal received\) at [0-9.]+m?s of 1m0s$`))
		Expect(long.Messages.Sent).To(BeNumerically(">", 0))
		Expect(long.Checks).To(HaveLen(4))
		for _, c := range long.Checks {
			Expect(c.Status).To(Equal("pass"), c.Name)
		}
		Expect(tiny.Interrupted).To(HavePrefix("not run: the run was interrupted"))

		// JUnit: parses, one interrupted error case per scenario.
		data, err = os.ReadFile(filepath.Join(dir, "r.xml"))
		Expect(err).NotTo(HaveOccurred())
		var suites struct {
			Interrupted string `xml:"interrupted,attr"`
			Suites      []struct {
				Name  string `xml:"name,attr"`
				Cases []struct {
					Name  string `xml:"name,attr"`
					Error *struct {
						Type string `xml:"type,attr"`
					} `xml:"error"`
				} `xml:"testcase"`
			} `xml:"testsuite"`
		}
		Expect(xml.Unmarshal(data, &suites)).To(Succeed())
		Expect(suites.Interrupted).To(Equal("interrupted (interrupt signal received)"))
		Expect(suites.Suites).To(HaveLen(2))
		Expect(suites.Suites[0].Cases).To(HaveLen(5), "interrupted + 4 checks")
		Expect(suites.Suites[0].Cases[0].Name).To(Equal("interrupted"))
		Expect(suites.Suites[0].Cases[0].Error.Type).To(Equal("interrupted"))

		// HTML: a whole page, marked interrupted.
		data, err = os.ReadFile(filepath.Join(dir, "r.html"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(data)).To(ContainSubstring(`<span class="verdict interrupted">INTERRUPTED</span></h1>`))
		Expect(string(data)).To(HaveSuffix("</html>\n"))
	}, SpecTimeout(2*time.Minute))
})
