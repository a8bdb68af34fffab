package scenario_test

import (
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/harness/threshold"
)

// withThresholds is a small chat scenario with the given thresholds block
// (indented under "thresholds:").
func withThresholds(block string) []byte {
	return []byte(`name: th
service: chat
duration: 10s
roles:
  - {name: honest, count: 2, behaviour: chatter}
  - {name: slow, count: 1, behaviour: slow-reader, start: 2s, stop: 8s}
checks: [test-bare-check]
thresholds:
` + block)
}

var _ = Describe("thresholds", func() {
	It("parses bounds per role into specs and one check each, after the listed checks", func() {
		s, err := scenario.Parse("th.yaml", withThresholds(`  honest: {p99: 50ms, errors: 1%, delivered_per_sec: 100}
  slow:
    errors: {RESOURCE_EXHAUSTED: ">= 1"}
    connect_max: "< 2s"
`))
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Thresholds).To(Equal([]threshold.Spec{
			{Role: "honest", Metric: "p99", Op: threshold.AtMost, Bound: 50, Text: "50ms", To: 10 * time.Second},
			{Role: "honest", Metric: "errors", Op: threshold.AtMost, Bound: 0.01, Share: true, Text: "1%", To: 10 * time.Second},
			{Role: "honest", Metric: "delivered_per_sec", Op: threshold.AtLeast, Bound: 100, Text: "100", To: 10 * time.Second},
			{Role: "slow", Metric: "errors", Code: "RESOURCE_EXHAUSTED", Op: threshold.AtLeast, Bound: 1, Text: ">= 1", From: 2 * time.Second, To: 8 * time.Second},
			{Role: "slow", Metric: "connect_max", Op: threshold.Below, Bound: 2000, Text: "< 2s", From: 2 * time.Second, To: 8 * time.Second},
		}))
		var names []string
		for _, c := range s.Checks {
			names = append(names, c.Name)
			ck, err := c.New()
			Expect(err).NotTo(HaveOccurred())
			Expect(ck).NotTo(BeNil())
		}
		Expect(names).To(Equal([]string{"test-bare-check",
			"threshold honest p99 <= 50ms", "threshold honest errors <= 1%", "threshold honest delivered_per_sec >= 100",
			"threshold slow errors[RESOURCE_EXHAUSTED] >= 1", "threshold slow connect_max < 2s"}))
		Expect(s.Checks[1].Line).To(Equal(9))
		Expect(s.Checks[4].Line).To(Equal(11))
		_, live := s.Checks[1].New()
		Expect(live).NotTo(HaveOccurred())
		ck, _ := s.Checks[1].New()
		_, ok := check.LiveViolations(ck)
		Expect(ok).To(BeTrue(), "a latency threshold judges live")
	})

	DescribeTable("rejects a bad block, naming file:line:col and the path",
		func(block, where, msg string) {
			s, err := scenario.Parse("th.yaml", withThresholds(block))
			Expect(s).To(BeNil())
			Expect(err).To(MatchError(HavePrefix("th.yaml:" + where)))
			Expect(err).To(MatchError(ContainSubstring(msg)))
			var e *scenario.Error
			Expect(errors.As(err, &e)).To(BeTrue())
		},
		Entry("an unknown role", "  honst: {p99: 50ms}\n", "9:3: thresholds.honst: ", `unknown role "honst"; did you mean "honest"? (roles: honest, slow)`),
		Entry("an unknown metric", "  honest:\n    p98: 50ms\n", "10:5: thresholds.honest.p98: ", `unknown metric "p98"; did you mean "p90"?`),
		Entry("a unitless latency", "  honest:\n    p99: 50\n", "10:5: thresholds.honest.p99: ", `"50" is not a duration`),
		Entry("an unknown status code", "  honest:\n    errors: {RESOURCE_EXHAUSTD: 1}\n", "10:14: thresholds.honest.errors.RESOURCE_EXHAUSTD: ", `did you mean "RESOURCE_EXHAUSTED"?`),
		Entry("a bad share", "  honest:\n    errors: 1.5%x\n", "10:5: thresholds.honest.errors: ", "neither a whole count"),
		Entry("a bound of the wrong kind", "  honest:\n    max: true\n", "10:5: thresholds.honest.max: ", "must be a bound like"),
		Entry("a role without metrics", "  honest: {}\n", "9:3: thresholds.honest: ", "must be a mapping of metric to bound"),
		Entry("a list instead of a mapping", "  - honest\n", "8:1: thresholds: ", "must be a mapping of role name to bounds"),
		Entry("a word for a rate", "  honest:\n    delivered_per_sec: fast\n", "10:5: thresholds.honest.delivered_per_sec: ", "is not a number per second"),
	)

	It("is optional", func() {
		s, err := scenario.Parse("th.yaml", withThresholds("")[:len(withThresholds(""))-len("thresholds:\n")])
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Thresholds).To(BeEmpty())
	})
})
