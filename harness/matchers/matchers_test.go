package matchers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/matchers"
	"github.com/bidikit/bidikit/harness/result"
)

func res(statuses map[string]check.Status) result.Scenario {
	s := result.Scenario{Name: "s"}
	for _, n := range []string{"total-order", "no-gaps", "no-duplicates", "no-lost-acks", "leaks"} {
		if st, ok := statuses[n]; ok {
			s.Checks = append(s.Checks, check.Verdict{Name: n, Status: st,
				Evidence: []check.Evidence{{Scope: "room-1", Seq: 7, Detail: "boom"}}})
		}
	}
	return s
}

var _ = Describe("matchers", func() {
	all := map[string]check.Status{"total-order": check.Pass, "no-gaps": check.Pass, "no-duplicates": check.Pass, "no-lost-acks": check.Pass}

	It("HoldTotalOrder passes a clean run and fails with evidence otherwise", func() {
		Expect(res(all)).To(matchers.HoldTotalOrder())
		bad := map[string]check.Status{"total-order": check.Pass, "no-gaps": check.Fail, "no-duplicates": check.Pass, "no-lost-acks": check.Pass}
		m := matchers.HoldTotalOrder()
		ok, err := m.Match(res(bad))
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeFalse())
		Expect(m.FailureMessage(nil)).To(And(ContainSubstring("no-gaps: fail"), ContainSubstring("scope=room-1 seq=7")))
	})
	It("treats not-measurable and missing verdicts as failures", func() {
		Expect(res(map[string]check.Status{"leaks": check.NotMeasurable})).NotTo(matchers.PassCheck("leaks"))
		m := matchers.PassCheck("total-order")
		ok, _ := m.Match(res(map[string]check.Status{"leaks": check.Pass}))
		Expect(ok).To(BeFalse())
		Expect(m.FailureMessage(nil)).To(ContainSubstring("no verdict for: total-order"))
	})
	It("PassAllChecks works on whole runs", func() {
		run := &result.Run{Scenarios: []result.Scenario{res(all)}}
		Expect(run).To(matchers.PassAllChecks())
		run.Scenarios[0].Checks[0].Status = check.Fail
		Expect(run).NotTo(matchers.PassAllChecks())
		_, err := matchers.PassAllChecks().Match(42)
		Expect(err).To(MatchError(ContainSubstring("expected a result.Scenario or result.Run, got int")))
	})
	It("ReturnToBaseline compares samples", func() {
		base := check.Sample{Goroutines: 10, HeapBytes: -1, Sockets: 1, Streams: 0}
		Expect(check.Sample{Goroutines: 25, Sockets: 1, Streams: 0}).To(matchers.ReturnToBaseline(base, 20))
		m := matchers.ReturnToBaseline(base, 20)
		ok, _ := m.Match(check.Sample{Goroutines: 100, Sockets: 1, Streams: 3})
		Expect(ok).To(BeFalse())
		Expect(m.FailureMessage(nil)).To(And(ContainSubstring("goroutines 100, baseline 10"), ContainSubstring("open streams 3")))
		_, err := matchers.ReturnToBaseline(check.Sample{Goroutines: -1, Sockets: -1, Streams: -1}, 0).Match(check.Sample{})
		Expect(err).To(MatchError(ContainSubstring("measured nothing")))
	})
})
