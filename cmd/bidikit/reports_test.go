package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"
)

// parseReports parses args with only the report flags and returns the
// destinations as "format>path" ("format>-" for stdout).
func parseReports(args ...string) ([]string, error) {
	var f reportFlags
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	outs, err := f.outputs()
	if err != nil {
		return nil, err
	}
	var got []string
	for _, o := range outs {
		p := o.path
		if o.stdout() {
			p = "-"
		}
		got = append(got, o.format+">"+p)
	}
	return got, nil
}

var _ = Describe("--report FORMAT[=PATH] and the older --out", func() {
	DescribeTable("reads unambiguous combinations",
		func(args []string, want []string) {
			got, err := parseReports(args...)
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(want))
		},
		Entry("nothing: text to stdout", []string{}, []string{"text>-"}),
		Entry("FORMAT=PATH", []string{"--report", "junit=r.xml", "--report", "markdown=s.md"}, []string{"junit>r.xml", "markdown>s.md"}),
		Entry("=- is stdout", []string{"--report", "json=-", "--report", "html=r.html"}, []string{"json>-", "html>r.html"}),
		Entry("no =PATH is stdout", []string{"--report", "text", "--report", "junit=r.xml"}, []string{"text>-", "junit>r.xml"}),
		Entry("the pair form", []string{"--report", "junit", "--out", "r.xml"}, []string{"junit>r.xml"}),
		// The example: the --out belongs to the report right before it.
		Entry("an --out after the second report", []string{"--report", "junit", "--report", "html", "--out", "r.html"}, []string{"junit>-", "html>r.html"}),
		Entry("pairs then a report to stdout", []string{"--report", "json", "--out", "r.json", "--report", "junit", "--out", "r.xml", "--report", "text"},
			[]string{"json>r.json", "junit>r.xml", "text>-"}),
		Entry("a format in capitals", []string{"--report", "JUnit=r.xml"}, []string{"junit>r.xml"}),
		Entry("a path holding =", []string{"--report", "json=a=b.json"}, []string{"json>a=b.json"}),
	)

	DescribeTable("refuses ambiguous combinations, naming the problem",
		func(args []string, msg string) {
			_, err := parseReports(args...)
			Expect(err).To(HaveOccurred())
			var ue usageError
			Expect(err).To(BeAssignableToTypeOf(ue), "a usage error: exit 2")
			Expect(err.Error()).To(ContainSubstring(msg))
		},
		Entry("an unknown format, with a guess", []string{"--report", "junti"}, `--report "junti": unknown format (did you mean "junit"?)`),
		Entry("an --out before any --report", []string{"--out", "r.xml", "--report", "junit"}, "--out r.xml comes before any --report: write --report FORMAT=r.xml"),
		Entry("more --out than --report", []string{"--report", "junit", "--out", "a.xml", "--out", "b.xml"}, "--out b.xml follows --out a.xml"),
		// The old positional reading of this wrote JUnit to r.html.
		Entry("two --out after two reports", []string{"--report", "text", "--report", "html", "--out", "-", "--out", "r.html"}, "--out r.html follows --out -"),
		Entry("an --out after FORMAT=PATH", []string{"--report", "junit=r.xml", "--out", "x.xml"}, "--out x.xml follows --report junit=r.xml, which names its own destination"),
		Entry("two reports to stdout", []string{"--report", "json", "--report", "text"}, "2 reports would go to stdout (json, text)"),
		Entry("two reports to stdout, one with =-", []string{"--report", "json=-", "--report", "junit", "--out", "-"}, "2 reports would go to stdout (json, junit)"),
		Entry("two reports to one file", []string{"--report", "json=r.out", "--report", "junit=./r.out"}, "--report json=r.out and --report junit=./r.out both write ./r.out"),
		Entry("an empty path", []string{"--report", "json="}, "--report json=: the path is empty"),
	)
})

var _ = Describe("bidikit run's reports", func() {
	It("shows the text summary on the console when every report goes to a file, and appends markdown to $GITHUB_STEP_SUMMARY", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(tinyScenario), 0o644)).To(Succeed())
		step := filepath.Join(dir, "step-summary.md")
		Expect(os.WriteFile(step, []byte("earlier step output\n"), 0o644)).To(Succeed())

		code, stdout, stderr := runBidikitEnv(ctx, dir, []string{"GITHUB_STEP_SUMMARY=" + step},
			"run", "tiny.yaml", "--report", "junit=r.xml", "--report", "markdown=summary.md")
		Expect(code).To(Equal(0), "stdout: %s\nstderr: %s", stdout, stderr)
		By("the console summary: the verdict table and line on stdout")
		Expect(stdout).To(ContainSubstring("total-order"))
		Expect(stdout).To(ContainSubstring("PASSED: 2 of 2 checks passed"))

		By("the markdown report: verdict heading, scenario and check tables")
		md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(md)).To(HavePrefix("## ✅ bidikit: PASSED: 2 of 2 checks passed\n"))
		Expect(string(md)).To(MatchRegexp(`\| tiny \| ✅ passed \| 2/2 \| 2 \|`))
		Expect(string(md)).To(ContainSubstring("| tiny | no-lost-acks | ✅ pass | 0 |"))

		By("$GITHUB_STEP_SUMMARY: the same markdown, after what was there")
		gh, err := os.ReadFile(step)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(gh)).To(Equal("earlier step output\n" + string(md)))

		By("JUnit: one test case per check")
		data, err := os.ReadFile(filepath.Join(dir, "r.xml"))
		Expect(err).NotTo(HaveOccurred())
		var suites struct {
			Suites []struct {
				Cases []struct {
					Name string `xml:"name,attr"`
				} `xml:"testcase"`
			} `xml:"testsuite"`
		}
		Expect(xml.Unmarshal(data, &suites)).To(Succeed())
		Expect(suites.Suites).To(HaveLen(1))
		var names []string
		for _, c := range suites.Suites[0].Cases {
			names = append(names, c.Name)
		}
		Expect(names).To(Equal([]string{"total-order", "no-lost-acks"}))
	}, SpecTimeout(time.Minute))

	It("puts the console summary on stderr when a report takes stdout, and shows none with --quiet", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		// A scenario that cannot run (nothing listens on port 1) gives a
		// whole verdict within the dial timeout.
		Expect(os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(tinyScenario), 0o644)).To(Succeed())
		code, stdout, stderr := runBidikit(ctx, dir, "run", "tiny.yaml", "--target", "127.0.0.1:1", "--dial-timeout", "1s", "--report", "json=-")
		Expect(code).To(Equal(1), stderr)
		Expect(stdout).To(HavePrefix("{"))
		Expect(stdout).NotTo(ContainSubstring("SCENARIO"), "no text table in the JSON")
		Expect(stderr).To(ContainSubstring("SCENARIO"))
		Expect(stderr).To(ContainSubstring("FAILED: 1 of 1 scenarios could not run"))

		code, stdout, stderr = runBidikit(ctx, dir, "run", "tiny.yaml", "--target", "127.0.0.1:1", "--dial-timeout", "1s", "--report", "json=r.json", "--quiet")
		Expect(code).To(Equal(1), stderr)
		Expect(stdout).To(BeEmpty())
		Expect(stderr).NotTo(ContainSubstring("SCENARIO"))
		Expect(filepath.Join(dir, "r.json")).To(BeAnExistingFile())
	}, SpecTimeout(time.Minute))
})
