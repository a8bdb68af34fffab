package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// quietScenario has lurkers only: nobody sends, so total-order sees nothing
// to judge and is not measurable.
const quietScenario = `# Two lurkers, nobody sends: total-order has nothing to judge.
name: quiet
service: chat
duration: 1s
settle: 0s
roles:
  - name: lurker
    count: 2
    behaviour: lurker
checks:
  - total-order
`

var _ = Describe("bidikit run with a not-measurable check", func() {
	It("exits 1 and says so, with the reason, in the text, JSON and JUnit reports alike", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "quiet.yaml"), []byte(quietScenario), 0o644)).To(Succeed())
		code, stdout, stderr := runBidikit(ctx, dir, "run", "--quiet",
			"--report", "json", "--out", "r.json", "--report", "junit", "--out", "r.xml", "--report", "text", "quiet.yaml")
		Expect(code).To(Equal(1), "not measurable is never a pass\nstdout: %s\nstderr: %s", stdout, stderr)

		lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
		last := lines[len(lines)-1]
		Expect(last).To(HavePrefix("FAILED: 1 of 1 checks not measurable: total-order ("), stdout)
		Expect(stdout).To(MatchRegexp(`quiet\s+total-order\s+NOT MEASURABLE\s+-`))

		data, err := os.ReadFile(filepath.Join(dir, "r.json"))
		Expect(err).NotTo(HaveOccurred())
		var doc struct {
			Passed  bool           `json:"passed"`
			Summary string         `json:"summary"`
			Counts  map[string]int `json:"counts"`
		}
		Expect(json.Unmarshal(data, &doc)).To(Succeed())
		Expect(doc.Passed).To(BeFalse())
		Expect(doc.Summary).To(Equal(last), "the same verdict line in text and JSON")
		Expect(doc.Counts).To(HaveKeyWithValue("not_measurable", 1))
		Expect(doc.Counts).To(HaveKeyWithValue("passed", 0))

		data, err = os.ReadFile(filepath.Join(dir, "r.xml"))
		Expect(err).NotTo(HaveOccurred())
		var xdoc struct {
			Failures int `xml:"failures,attr"`
			Skipped  int `xml:"skipped,attr"`
			Suites   []struct {
				Cases []struct {
					Failure *struct {
						Type string `xml:"type,attr"`
					} `xml:"failure"`
				} `xml:"testcase"`
			} `xml:"testsuite"`
		}
		Expect(xml.Unmarshal(data, &xdoc)).To(Succeed())
		Expect([]int{xdoc.Failures, xdoc.Skipped}).To(Equal([]int{1, 0}))
		Expect(xdoc.Suites[0].Cases[0].Failure).NotTo(BeNil())
		Expect(xdoc.Suites[0].Cases[0].Failure.Type).To(Equal("not-measurable"))
	}, SpecTimeout(time.Minute))
})
