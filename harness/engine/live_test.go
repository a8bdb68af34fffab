package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/broken"
	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
)

// slowReaderThreshold: honest chatters beside a slow reader (one event a
// second from 1s), with a p99 bound on the chatters' delivery latency. A
// broadcast that blocks on the slow reader stalls every member behind it.
const slowReaderThreshold = `name: threshold-slow-reader
service: chat
seed: 3
duration: 5s
ramp: 500ms
settle: 0s
roles:
  - {name: honest, count: 4, behaviour: chatter, rooms: 1, rate: 10/s, params: {body_bytes: 4000}}
  - {name: slow, count: 1, behaviour: slow-reader, rooms: 1, rate: 1/s, start: 1s, params: {read_delay: 1s}}
thresholds:
  honest: {p99: 50ms}
checks: []
`

// liveScenario returns a small chat scenario of the given duration with the
// given thresholds block and checks.
func liveScenario(duration, thresholds string) *scenario.Scenario {
	s, err := scenario.Parse("live.yaml", []byte(`name: live
service: chat
seed: 5
duration: `+duration+`
settle: 0s
roles:
  - {name: chatter, count: 4, behaviour: chatter, rooms: 1, rate: 20/s}
thresholds:
`+thresholds+`
checks: [total-order, no-gaps]
`))
	Expect(err).NotTo(HaveOccurred())
	return s
}

func quietLog() engine.Option {
	return engine.WithLogger(slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// verdict returns res's verdict named name.
func verdict(res result.Scenario, name string) check.Verdict {
	for _, v := range res.Checks {
		if v.Name == name {
			return v
		}
	}
	Fail("no verdict " + name + " in " + describe(res))
	return check.Verdict{}
}

var _ = Describe("thresholds through the engine", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("fail honest p99 <= 50ms against a broadcast that blocks on a slow reader, with the crossing time, and pass it against the reference", func(ctx SpecContext) {
		s, err := scenario.Parse("slow-reader.yaml", []byte(slowReaderThreshold))
		Expect(err).NotTo(HaveOccurred())
		const name = "threshold honest p99 <= 50ms"

		srv, err := broken.StartChat(broken.BlockingBroadcast)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Stop)
		res, err := engine.Run(ctx, s, engine.WithTarget(srv.Addr()), quietLog())
		Expect(err).NotTo(HaveOccurred(), describe(res))
		srv.Stop()
		GinkgoWriter.Print(describe(res))
		v := verdict(res, name)
		Expect(v.Status).To(Equal(check.Fail), describe(res))
		Expect(v.Evidence).To(HaveLen(1))
		Expect(v.Evidence[0].At).To(BeNumerically(">", 0), "the crossing time")
		Expect(v.Evidence[0].Detail).To(MatchRegexp(`delivery latency p99 is .* at the end, bound <= 50ms, over \d+ deliveries; beyond the bound since [0-9.]+m?s \(.*; the first sample beyond the bound began at [0-9.]+m?s and took `))
		Expect(v.Evidence[0].Scope).To(Equal("role honest"))
		Expect(res.Passed).To(BeFalse())

		ref := startReference()
		res, err = engine.Run(ctx, s, engine.WithTarget(ref.Addr()), quietLog())
		Expect(err).NotTo(HaveOccurred(), describe(res))
		GinkgoWriter.Print(describe(res))
		v = verdict(res, name)
		Expect(v.Status).To(Equal(check.Pass), describe(res))
		Expect(v.Summary).To(MatchRegexp(`honest delivery latency p99 .*, within <= 50ms, over \d+ deliveries`))
	}, SpecTimeout(2*time.Minute))
})

var _ = Describe("live verdicts, --fail-fast and interrupts", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("reports a live violation at once and, with WithFailFast, ends the run there and judges what was seen", func(ctx SpecContext) {
		srv := startReference()
		// No delivery takes 1µs or less: the bound is crossed once 100
		// deliveries came.
		s := liveScenario("60s", "  chatter: {p99: 1us}\n")
		var mu sync.Mutex
		var nudges []engine.Progress
		res, err := engine.Run(ctx, s, engine.WithTarget(srv.Addr()), engine.WithFailFast(), quietLog(),
			engine.WithProgress(func(p engine.Progress) {
				if p.NewViolation {
					mu.Lock()
					nudges = append(nudges, p)
					mu.Unlock()
				}
			}, time.Hour))
		Expect(err).NotTo(HaveOccurred(), describe(res))
		Expect(res.Interrupted).To(MatchRegexp(`^fail-fast: check threshold chatter p99 <= 1us found its first violation at [0-9.]+m?s of 1m0s$`))
		Expect(res.DurationS).To(BeNumerically("<", s.Duration.Seconds()), "stopped before its duration")
		Expect(res.Passed).To(BeFalse())
		Expect(res.OK()).To(BeFalse())
		Expect(res.Checks).To(HaveLen(3), "every check judged what was seen")
		Expect(verdict(res, "total-order").Status).To(Equal(check.Pass))
		Expect(verdict(res, "threshold chatter p99 <= 1us").Status).To(Equal(check.Fail))
		mu.Lock()
		defer mu.Unlock()
		Expect(nudges).NotTo(BeEmpty(), "the first violation was reported at once, not at the (hourly) interval")
		Expect(nudges[0].Violated).To(ContainElement(HaveField("Check", "threshold chatter p99 <= 1us")))
	}, SpecTimeout(time.Minute))

	It("on a cancelled context stops the clients, judges every check on what was seen and marks the result interrupted", func(ctx SpecContext) {
		srv := startReference()
		s := liveScenario("60s", "  chatter: {p99: 10s}\n")
		rctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		var mu sync.Mutex
		var seen []engine.Progress
		res, err := engine.Run(rctx, s, engine.WithTarget(srv.Addr()), quietLog(),
			engine.WithProgress(func(p engine.Progress) {
				mu.Lock()
				seen = append(seen, p)
				mu.Unlock()
				if p.Phase == engine.PhaseRunning && p.Delivered > 200 && p.P99 > 0 {
					cancel(errors.New("test interrupt"))
				}
			}, 50*time.Millisecond))
		Expect(err).To(MatchError(engine.ErrInterrupted))
		Expect(err).To(MatchError(context.Canceled))
		Expect(err.Error()).To(ContainSubstring("test interrupt"))
		Expect(res.Failure).To(BeEmpty())
		Expect(res.Interrupted).To(MatchRegexp(`^interrupted \(test interrupt\) at [0-9.]+m?s of 1m0s$`))
		Expect(res.Passed).To(BeFalse())
		Expect(res.Checks).To(HaveLen(3))
		for _, v := range res.Checks {
			Expect(v.Status).To(Equal(check.Pass), describe(res))
		}
		Expect(res.Messages.Delivered).To(BeNumerically(">", 200))

		mu.Lock()
		defer mu.Unlock()
		phases := map[engine.Phase]bool{}
		for _, p := range seen {
			phases[p.Phase] = true
			Expect(p.Scenario).To(Equal("live"))
			Expect(p.Clients).To(Equal(4))
		}
		Expect(phases).To(HaveKey(engine.PhaseRunning))
		last := seen[len(seen)-1]
		Expect(last.Sent).To(BeNumerically(">", 0))
		Expect(last.ErrorsByCode).NotTo(BeNil())
	}, SpecTimeout(time.Minute))
})
