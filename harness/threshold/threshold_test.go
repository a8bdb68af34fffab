package threshold_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/threshold"
)

// spec parses a bound for role "honest" over a 10 s window.
func spec(metric, bound string) threshold.Spec {
	s := threshold.Spec{Role: "honest", To: 10 * time.Second}
	Expect(threshold.ParseBound(metric, bound, &s)).To(Succeed())
	return s
}

func build(s threshold.Spec) check.Checker {
	c, err := threshold.New(s)
	Expect(err).NotTo(HaveOccurred())
	return c
}

func live(c check.Checker) int {
	n, ok := check.LiveViolations(c)
	Expect(ok).To(BeTrue())
	return n
}

// deliver feeds n deliveries to honest client 0, one every step from
// start, each with latency lat.
func deliver(c check.Checker, start, step time.Duration, n int, lat time.Duration) time.Duration {
	at := start
	for range n {
		c.Observe(&event.Event{Kind: event.Deliver, Client: 0, Role: "honest", At: at, Latency: lat})
		at += step
	}
	return at
}

var _ = Describe("ParseBound", func() {
	DescribeTable("reads each metric's spelling",
		func(metric, text string, op threshold.Op, bound float64, share bool) {
			var s threshold.Spec
			Expect(threshold.ParseBound(metric, text, &s)).To(Succeed())
			Expect(s.Op).To(Equal(op))
			Expect(s.Bound).To(BeNumerically("~", bound, 1e-9))
			Expect(s.Share).To(Equal(share))
		},
		Entry("a latency ceiling", "p99", "50ms", threshold.AtMost, 50.0, false),
		Entry("a strict latency ceiling", "connect_max", "< 1.5s", threshold.Below, 1500.0, false),
		Entry("a rate floor", "delivered_per_sec", "5000", threshold.AtLeast, 5000.0, false),
		Entry("a rate per minute", "sent_per_sec", "120/m", threshold.AtLeast, 2.0, false),
		Entry("a rate ceiling", "sent_per_sec", "<= 100/s", threshold.AtMost, 100.0, false),
		Entry("an error share", "errors", "0.5%", threshold.AtMost, 0.005, true),
		Entry("an error count floor", "errors", ">= 1", threshold.AtLeast, 1.0, false),
	)

	DescribeTable("says what is wrong with a bad bound",
		func(metric, text, msg string) {
			var s threshold.Spec
			Expect(threshold.ParseBound(metric, text, &s)).To(MatchError(ContainSubstring(msg)))
		},
		Entry("a unitless latency", "p99", "50", `"50" is not a duration`),
		Entry("an operator alone", "p99", "<=", "no bound"),
		Entry("a word for a rate", "sent_per_sec", "fast", "is not a number per second"),
		Entry("a bad rate unit", "sent_per_sec", "5/x", `unknown unit "x"`),
		Entry("a share over 100%", "errors", "120%", "between 0% and 100%"),
		Entry("a fractional count", "errors", "1.5", "neither a whole count"),
		Entry("an unknown metric", "p98", "1ms", `unknown metric "p98"`),
	)
})

var _ = Describe("a threshold's checker", func() {
	ctx := context.Background()

	It("fails a p99 over its bound with the figure, the bound and when it crossed", func() {
		c := build(spec("p99", "50ms"))
		at := deliver(c, 0, time.Millisecond, 1000, 5*time.Millisecond) // 0..1s fast
		Expect(live(c)).To(Equal(0))
		deliver(c, at, time.Millisecond, 1000, 300*time.Millisecond) // 1s..2s slow
		Expect(live(c)).To(Equal(1), "beyond the bound now")
		v := c.Verdict(ctx, nil)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Name).To(Equal("threshold honest p99 <= 50ms"))
		Expect(v.Violations).To(Equal(1))
		Expect(v.Evidence).To(HaveLen(1))
		ev := v.Evidence[0]
		Expect(ev.At).To(BeNumerically(">=", time.Second))
		Expect(ev.At).To(BeNumerically("<=", 1500*time.Millisecond), "the first evaluation after the slow deliveries began")
		Expect(ev.Detail).To(MatchRegexp(`delivery latency p99 is 300(\.\d+)?ms at the end, bound <= 50ms, over 2000 deliveries; beyond the bound since 1\.\d+s .*; the first sample beyond the bound began at 700ms and took 300ms$`))
	})

	It("passes a p99 within its bound, saying what it measured", func() {
		c := build(spec("p99", "50ms"))
		deliver(c, 0, 10*time.Millisecond, 300, 5*time.Millisecond)
		v := c.Verdict(ctx, nil)
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
		Expect(v.Summary).To(ContainSubstring("over 300 deliveries"))
	})

	It("ignores other roles' figures and is not measurable without samples", func() {
		c := build(spec("p99", "50ms"))
		c.Observe(&event.Event{Kind: event.Deliver, Client: 1, Role: "other", At: time.Second, Latency: time.Second})
		v := c.Verdict(ctx, nil)
		Expect(v.Status).To(Equal(check.NotMeasurable))
		Expect(v.Summary).To(ContainSubstring("role honest had no deliveries"))
	})

	It("does not count a crossing live before enough samples, but judges them all at the end", func() {
		c := build(spec("p99", "50ms"))
		deliver(c, 0, 10*time.Millisecond, 500, time.Second)
		Expect(live(c)).To(Equal(0), "a p99 needs 1,000 samples to count live")
		Expect(c.Verdict(ctx, nil).Status).To(Equal(check.Fail))
		c = build(spec("p90", "50ms"))
		deliver(c, 0, 10*time.Millisecond, 500, time.Second)
		Expect(live(c)).To(Equal(1), "a p90 needs 100")
	})

	It("keeps a max crossing once it happened", func() {
		c := build(spec("max", "100ms"))
		deliver(c, 0, 10*time.Millisecond, 1, time.Second)
		deliver(c, 10*time.Millisecond, 10*time.Millisecond, 50, time.Millisecond)
		Expect(live(c)).To(Equal(1))
	})

	It("counts errors by code, leaving out streams a fault broke and ends the client chose", func() {
		c := build(spec("errors", "0"))
		s := spec("errors", "0")
		s.Code = "RESOURCE_EXHAUSTED"
		byCode := build(s)
		for _, ck := range []check.Checker{c, byCode} {
			for _, e := range []event.Event{
				{Kind: event.Connect, Client: 0, Role: "honest", At: 0},
				{Kind: event.Send, Client: 0, Role: "honest", At: time.Millisecond},
				{Kind: event.Fault, Client: 0, Role: "honest", At: 2 * time.Millisecond},
				{Kind: event.Disconnect, Client: 0, Role: "honest", At: 3 * time.Millisecond, Code: codes.Unavailable},
				{Kind: event.Connect, Client: 0, Role: "honest", At: 4 * time.Millisecond},
				{Kind: event.Disconnect, Client: 0, Role: "honest", At: 5 * time.Millisecond, Code: codes.Canceled},
				{Kind: event.Disconnect, Client: 0, Role: "honest", At: 6 * time.Millisecond, Code: codes.Aborted, Field: event.FieldClientEnd},
				{Kind: event.Connect, Client: 0, Role: "honest", At: 7 * time.Millisecond},
				{Kind: event.Error, Client: 0, Role: "honest", At: 300 * time.Millisecond, Code: codes.Internal},
			} {
				ck.Observe(&e)
			}
		}
		v := c.Verdict(ctx, nil)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Summary).To(ContainSubstring("1 over 4 operations"))
		Expect(v.Evidence[0].At).To(Equal(300 * time.Millisecond))
		Expect(live(c)).To(Equal(1))
		Expect(byCode.Verdict(ctx, nil).Status).To(Equal(check.Pass), "INTERNAL is not RESOURCE_EXHAUSTED")
	})

	It("leaves out stream ends after a run-wide fault (every connection's), but not the server's Errors", func() {
		c := build(spec("errors", "0"))
		for _, e := range []event.Event{
			{Kind: event.Connect, Client: 0, Role: "honest", At: 0},
			{Kind: event.Fault, Client: -1, Detail: "blackhole", At: time.Millisecond},
			{Kind: event.Disconnect, Client: 0, Role: "honest", At: 3 * time.Millisecond, Code: codes.Unavailable},
		} {
			c.Observe(&e)
		}
		Expect(c.Verdict(ctx, nil).Status).To(Equal(check.Pass))
		c.Observe(&event.Event{Kind: event.Error, Client: 0, Role: "honest", At: 4 * time.Millisecond, Code: codes.Internal})
		Expect(c.Verdict(ctx, nil).Status).To(Equal(check.Fail))
	})

	It("judges a rate as the mean over the role's window and names the slowest whole second", func() {
		c := build(spec("delivered_per_sec", "50"))
		at := deliver(c, 0, 10*time.Millisecond, 500, time.Millisecond) // 100/s for 5s
		deliver(c, at, 100*time.Millisecond, 50, time.Millisecond)      // 10/s for 5s
		Expect(live(c)).To(Equal(0), "rates are judged at the end")
		v := c.Verdict(ctx, nil)
		Expect(v.Status).To(Equal(check.Pass), v.Summary) // 550 over 9.9s

		c = build(spec("delivered_per_sec", "80"))
		at = deliver(c, 0, 10*time.Millisecond, 500, time.Millisecond)
		deliver(c, at, 100*time.Millisecond, 50, time.Millisecond)
		v = c.Verdict(ctx, nil)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence[0].Detail).To(ContainSubstring("slowest whole second"))
		Expect(v.Evidence[0].At).To(BeNumerically(">=", 5*time.Second))
	})
})
