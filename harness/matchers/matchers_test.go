package matchers_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"

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
		_, err := matchers.ReturnToBaseline(check.Sample{Goroutines: -1, HeapBytes: -1, Sockets: -1, Streams: -1,
			Errors: []string{"goroutines: no admin URL given"}}, 0).Match(check.Sample{})
		Expect(err).To(MatchError(And(ContainSubstring("no goroutine count"), ContainSubstring("no admin URL given"))))
	})

	It("ReturnToBaseline compares the live heap too", func() {
		base := check.Sample{Goroutines: 10, HeapBytes: 8 << 20, Sockets: -1, Streams: -1}
		Expect(check.Sample{Goroutines: 10, HeapBytes: 8<<20 + 31<<20, Sockets: -1, Streams: -1}).To(matchers.ReturnToBaseline(base, 0))
		m := matchers.ReturnToBaseline(base, 0)
		ok, err := m.Match(check.Sample{Goroutines: 10, HeapBytes: 8<<20 + 40<<20, Sockets: -1, Streams: -1})
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeFalse())
		Expect(m.FailureMessage(nil)).To(ContainSubstring("live heap 50331648 bytes, baseline 8388608 (+41943040, +33554432 allowed)"))

		tol := check.LeakParams{}.Tolerance(100) // 2 + 10 goroutines, 32 MiB + 1600 KiB
		Expect(check.Sample{Goroutines: 22, HeapBytes: 8<<20 + 33<<20, Sockets: -1, Streams: -1}).To(matchers.ReturnToBaselineWithin(base, tol))
		Expect(check.Sample{Goroutines: 23, HeapBytes: 8 << 20, Sockets: -1, Streams: -1}).NotTo(matchers.ReturnToBaselineWithin(base, tol))
	})

	DescribeTable("ReturnToBaseline never passes on a figure the baseline had and the sample lacks",
		func(s check.Sample, want string) {
			base := check.Sample{Goroutines: 10, HeapBytes: 8 << 20, Sockets: 1, Streams: 0}
			for _, m := range []types.GomegaMatcher{matchers.ReturnToBaseline(base, 20), matchers.ReturnToBaselineWithin(base, check.LeakParams{}.Tolerance(10))} {
				ok, err := m.Match(s)
				Expect(ok).To(BeFalse())
				Expect(err).To(MatchError(And(ContainSubstring("not measurable"), ContainSubstring(want))))
			}
		},
		Entry("goroutines", check.Sample{Goroutines: -1, HeapBytes: 8 << 20, Sockets: 1, Streams: 0,
			Errors: []string{"goroutines: Get \"http://127.0.0.1:1/debug/pprof/goroutine?debug=1\": connection refused"}}, "goroutines: Get \"http://127.0.0.1:1"),
		Entry("heap", check.Sample{Goroutines: 10, HeapBytes: -1, Sockets: 1, Streams: 0,
			Errors: []string{"heap: 503 Service Unavailable"}}, "heap: 503 Service Unavailable"),
		Entry("channelz", check.Sample{Goroutines: 10, HeapBytes: 8 << 20, Sockets: -1, Streams: -1,
			Errors: []string{"channelz: rpc error: code = Unavailable"}}, "open sockets and streams: rpc error"),
	)

	It("ReturnToBaseline reads a real admin endpoint through check.Measure, and errs once it is gone", func(ctx SpecContext) {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		web := httptest.NewServer(mux)
		DeferCleanup(web.Close)
		base := check.Measure(ctx, web.URL, nil)
		Expect(base.Goroutines).To(BeNumerically(">", 0), "%v", base.Errors)
		Expect(base.HeapBytes).To(BeNumerically(">", 0), "%v", base.Errors)
		Expect(base.Unanswered("channelz")).To(ContainSubstring("does not serve gRPC channelz"))
		Eventually(func() check.Sample { return check.Measure(ctx, web.URL, nil) }).
			WithTimeout(10 * time.Second).Should(matchers.ReturnToBaseline(base, 20))

		web.Close()
		_, err := matchers.ReturnToBaseline(base, 20).Match(check.Measure(ctx, web.URL, nil))
		Expect(err).To(MatchError(And(ContainSubstring("not measurable"), ContainSubstring("goroutines: "), ContainSubstring(web.URL))))
	}, SpecTimeout(30*time.Second))
})
