package fault_test

import (
	"context"
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/fault"
)

var _ = Describe("registry", func() {
	It("registers every fault under its name and scope", func() {
		want := map[string]fault.Scope{
			"cancel": fault.Stream, "half-close": fault.Stream, "abrupt-close": fault.Stream,
			"stop-reading": fault.Stream, "pause": fault.Stream, "burst": fault.Stream,
			"malformed": fault.Stream, "oversized": fault.Stream, "resume-stale": fault.Stream,
			"latency": fault.Connection, "bandwidth": fault.Connection, "reset": fault.Connection,
			"blackhole": fault.Connection, "slicer": fault.Connection,
			"kill-server": fault.ServerProcess,
		}
		for name, scope := range want {
			spec, ok := fault.Lookup(name)
			Expect(ok).To(BeTrue(), "fault %q is not registered", name)
			Expect(spec.Scope).To(Equal(scope), "scope of %q", name)
		}
		// Any other fault (a new file) only has to be complete: adding one
		// touches its own file and its test, not this list.
		Expect(len(fault.Names())).To(BeNumerically(">=", len(want)))
		for _, name := range fault.Names() {
			spec, _ := fault.Lookup(name)
			Expect(spec.Name).To(Equal(name))
			Expect(spec.Summary).NotTo(BeEmpty(), "summary of %q", name)
			Expect(spec.Scope).To(BeElementOf(fault.Stream, fault.Connection, fault.ServerProcess), "scope of %q", name)
			Expect(spec.New).NotTo(BeNil(), "factory of %q", name)
		}
	})
})

var _ = Describe("stream faults", func() {
	DescribeTable("call the right method with the right parameters on every target",
		func(name, params string, want string) {
			targets := []*fakeClient{{idx: 0}, {idx: 1}, {idx: 2}}
			f := mustBuild(name, params)
			clients := []fault.Target{targets[0], nil, targets[1], targets[2]}
			Expect(f.Inject(context.Background(), env{}, clients)).To(Succeed())
			for _, c := range targets {
				Expect(c.Calls()).To(Equal([]string{want}), "client %d", c.idx)
			}
		},
		Entry("cancel", "cancel", "", "CancelStream"),
		Entry("half-close", "half-close", "", "HalfClose"),
		Entry("abrupt-close", "abrupt-close", "", "AbruptClose"),
		Entry("stop-reading", "stop-reading", "", "StopReading"),
		Entry("pause default", "pause", "", "Pause(5s)"),
		Entry("pause", "pause", "duration: 1500ms", "Pause(1.5s)"),
		Entry("burst default", "burst", "", "Burst(100)"),
		Entry("burst", "burst", "count: 7", "Burst(7)"),
		Entry("malformed", "malformed", "", "SendMalformed"),
		Entry("oversized default 8 MiB", "oversized", "", "SendOversized(8388608)"),
		Entry("oversized", "oversized", "bytes: 5000000", "SendOversized(5000000)"),
		Entry("resume-stale default from the beginning", "resume-stale", "", "ResumeStale(0)"),
		Entry("resume-stale", "resume-stale", "back: 10", "ResumeStale(10)"),
	)

	It("does nothing once the context is done", func() {
		c := &fakeClient{}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := mustBuild("cancel", "").Inject(ctx, env{}, []fault.Target{c})
		Expect(err).To(MatchError(context.Canceled))
		Expect(c.Calls()).To(BeEmpty())
	})

	It("refuses a target that cannot take the fault, naming the fault and the client", func() {
		err := mustBuild("half-close", "").Inject(context.Background(), env{}, []fault.Target{bareTarget{}})
		Expect(err).To(MatchError(And(ContainSubstring("fault half-close"), ContainSubstring("client 4 (role lurker)"), ContainSubstring("HalfCloser"))))
	})

	It("accepts no targets", func() {
		Expect(mustBuild("burst", "").Inject(context.Background(), env{}, nil)).To(Succeed())
	})
})

var _ = Describe("parameter validation", func() {
	DescribeTable("rejects impossible values, naming the parameter",
		func(name, params, param string) {
			_, _, err := build(name, params)
			Expect(err).To(HaveOccurred())
			var pe *fault.ParamError
			Expect(errors.As(err, &pe)).To(BeTrue(), "want a *fault.ParamError, got %v", err)
			Expect(pe.Fault).To(Equal(name))
			Expect(pe.Param).To(Equal(param))
			Expect(err.Error()).To(ContainSubstring(param))
		},
		Entry(nil, "pause", "duration: 0s", "duration"),
		Entry(nil, "pause", "duration: -1s", "duration"),
		Entry(nil, "burst", "count: 0", "count"),
		Entry(nil, "burst", "count: 2000000", "count"),
		Entry(nil, "oversized", "bytes: 0", "bytes"),
		Entry(nil, "oversized", "bytes: 2147483648", "bytes"),
		Entry(nil, "latency", "latency: 0s", "latency"),
		Entry(nil, "latency", "latency: 500us", "latency"),
		Entry(nil, "latency", "jitter: -1ms", "jitter"),
		Entry(nil, "latency", "duration: -1s", "duration"),
		Entry(nil, "latency", "stream: sideways", "stream"),
		Entry(nil, "bandwidth", "", "rate"),
		Entry(nil, "bandwidth", "rate: -5", "rate"),
		Entry(nil, "bandwidth", "{rate: 5, duration: -1s}", "duration"),
		Entry(nil, "reset", "timeout: -1ms", "timeout"),
		Entry(nil, "reset", "stream: both-ways", "stream"),
		Entry(nil, "blackhole", "timeout: -1ms", "timeout"),
		Entry(nil, "blackhole", "timeout: 10us", "timeout"),
		Entry(nil, "blackhole", "duration: -2s", "duration"),
		Entry(nil, "slicer", "average_size: 0", "average_size"),
		Entry(nil, "slicer", "{average_size: 10, size_variation: 10}", "size_variation"),
		Entry(nil, "slicer", "size_variation: -1", "size_variation"),
		Entry(nil, "slicer", "delay: -1ms", "delay"),
		Entry(nil, "slicer", "duration: -1ms", "duration"),
		Entry(nil, "kill-server", "restart_after: -1s", "restart_after"),
	)

	DescribeTable("rejects unknown parameters through the strict decoder",
		func(name, params string) {
			_, _, err := build(name, params)
			Expect(err).To(MatchError(ContainSubstring("bogus")))
		},
		Entry(nil, "cancel", "bogus: 1"),
		Entry(nil, "pause", "bogus: 1"),
		Entry(nil, "latency", "bogus: 1"),
		Entry(nil, "kill-server", "bogus: 1"),
	)

	It("names the known faults for an unknown one", func() {
		_, _, err := build("meteor", "")
		Expect(err).To(MatchError(And(ContainSubstring(`"meteor"`), ContainSubstring("abrupt-close"))))
	})
})

var _ = Describe("kill-server", func() {
	It("needs a spawned server", func() {
		err := mustBuild("kill-server", "").Inject(context.Background(), env{}, nil)
		Expect(err).To(MatchError(ContainSubstring("kill-server needs --spawn-server")))
	})

	It("kills without restarting by default", func() {
		s := &fakeServer{}
		Expect(mustBuild("kill-server", "").Inject(context.Background(), env{server: s}, nil)).To(Succeed())
		Consistently(func() []int { k, r := s.counts(); return []int{k, r} }).
			WithTimeout(200 * time.Millisecond).Should(Equal([]int{1, 0}))
	})

	It("returns the kill's error", func() {
		s := &fakeServer{killErr: errors.New("no such process")}
		err := mustBuild("kill-server", "restart_after: 10ms").Inject(context.Background(), env{server: s}, nil)
		Expect(err).To(MatchError("no such process"))
	})

	It("restarts after restart_after without blocking Inject", func(ctx SpecContext) {
		s := &fakeServer{}
		runCtx, cancel := context.WithCancel(ctx)
		DeferCleanup(cancel)
		Expect(mustBuild("kill-server", "restart_after: 100ms").Inject(runCtx, env{server: s}, nil)).To(Succeed())
		k, r := s.counts()
		Expect([]int{k, r}).To(Equal([]int{1, 0}), "Inject must return before the restart")
		Eventually(func() int { _, r := s.counts(); return r }).WithTimeout(5 * time.Second).Should(Equal(1))
		s.mu.Lock()
		defer s.mu.Unlock()
		Expect(s.restartCtxIsLive).To(BeTrue())
	}, SpecTimeout(10*time.Second))

	It("does not restart once the run is over", func() {
		s := &fakeServer{}
		runCtx, cancel := context.WithCancel(context.Background())
		Expect(mustBuild("kill-server", "restart_after: 50ms").Inject(runCtx, env{server: s}, nil)).To(Succeed())
		cancel()
		Consistently(func() int { _, r := s.counts(); return r }).WithTimeout(300 * time.Millisecond).Should(BeZero())
	})
})

// bareTarget is a client that takes no stream fault.
type bareTarget struct{}

func (bareTarget) Index() int   { return 4 }
func (bareTarget) Role() string { return "lurker" }
