package metrics_test

import (
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/metrics"
	"github.com/bidikit/bidikit/harness/result"
)

func newCollector() *metrics.Collector {
	return metrics.New([]metrics.RoleInfo{{Name: "a", Behaviour: "chatter", Clients: 1}, {Name: "b", Behaviour: "lurker", Clients: 1}}, []int{0, 1})
}

var _ = Describe("Collector", func() {
	It("counts traffic and errors and summarises latency per role and overall", func() {
		c := newCollector()
		c.Observe(&event.Event{Kind: event.Connect, Client: 1, At: time.Second, Latency: 2 * time.Millisecond})
		for i := range 100 {
			at := time.Second + time.Duration(i)*10*time.Millisecond
			c.Observe(&event.Event{Kind: event.Send, Client: 0, At: at})
			c.Observe(&event.Event{Kind: event.Ack, Client: 0, At: at, Latency: time.Millisecond})
			c.Observe(&event.Event{Kind: event.Deliver, Client: 1, At: at, Latency: time.Duration(i+1) * time.Millisecond})
		}
		c.Observe(&event.Event{Kind: event.Error, Client: 0, Code: codes.ResourceExhausted})
		c.Observe(&event.Event{Kind: event.Disconnect, Client: 1, At: 3 * time.Second, Code: codes.Canceled})
		c.Observe(&event.Event{Kind: event.Unread, Client: 1, At: 3 * time.Second, Field: event.UnreadUnmatched})
		c.Observe(&event.Event{Kind: event.Unread, Client: 1, At: 3 * time.Second, Field: event.UnreadUnmatched})
		c.Observe(&event.Event{Kind: event.Unread, Client: 0, At: 3 * time.Second, Field: event.UnreadError})
		c.Finish(4 * time.Second)
		var s result.Scenario
		c.Fill(&s)
		Expect(s.Messages).To(Equal(result.Messages{Sent: 100, Acked: 100, Delivered: 100}))
		Expect(s.Errors).To(Equal(map[string]int{"RESOURCE_EXHAUSTED": 1, "CANCELLED": 1,
			"harness:unread-no-rule": 2, "harness:unread-mapping-error": 1}))
		Expect(s.LatencyMS.Count).To(BeEquivalentTo(100))
		Expect(s.LatencyMS.P50).To(BeNumerically("~", 50, 1))
		Expect(s.LatencyMS.Max).To(BeNumerically("~", 100, 1))
		Expect(s.Roles).To(HaveLen(2))
		Expect(s.Roles[0].Messages.Sent).To(BeEquivalentTo(100))
		Expect(s.Roles[1].LatencyMS.Count).To(BeEquivalentTo(100))
		Expect(s.Roles[1].ConnectMS.P50).To(BeNumerically("~", 2, 0.01))
		Expect(s.Roles[1].FirstMessageMS.Count).To(BeEquivalentTo(1))
		Expect(s.Roles[1].Distribution).NotTo(BeEmpty())
		Expect(s.Timeline).NotTo(BeEmpty())
		var sent float64
		for _, p := range s.Timeline {
			sent += p.SentPerSec * 0.25
		}
		Expect(sent).To(BeNumerically("~", 100, 0.5))
	})

	It("counts game tick updates as deliveries, their input-to-update time as latency", func() {
		c := newCollector()
		for i := range 10 {
			c.Observe(&event.Event{Kind: event.Tick, Client: 1, At: time.Second + time.Duration(i)*50*time.Millisecond, Seq: uint64(i + 1), Latency: 20 * time.Millisecond})
		}
		c.Finish(2 * time.Second)
		var s result.Scenario
		c.Fill(&s)
		Expect(s.Messages.Delivered).To(BeEquivalentTo(10))
		Expect(s.Roles[1].Messages.Delivered).To(BeEquivalentTo(10))
		Expect(s.LatencyMS.Count).To(BeEquivalentTo(10))
	})

	It("keeps the timeline bounded on a very long run", func() {
		c := newCollector()
		for i := range 100_000 {
			c.Observe(&event.Event{Kind: event.Send, Client: 0, At: time.Duration(i) * 100 * time.Millisecond})
		}
		c.Finish(10_000 * time.Second)
		var s result.Scenario
		c.Fill(&s)
		Expect(len(s.Timeline)).To(BeNumerically("<=", result.MaxTimeline))
		Expect(len(s.Timeline)).To(BeNumerically(">", result.MaxTimeline/4))
		Expect(s.Timeline[len(s.Timeline)-1].AtS).To(BeNumerically("~", 10_000, 1))
		var total float64
		prev := 0.0
		for _, p := range s.Timeline {
			total += p.SentPerSec * (p.AtS - prev)
			prev = p.AtS
		}
		Expect(total).To(BeNumerically("~", 100_000, 1))
	})

	It("exports histograms that merge exactly", func() {
		a, b := newCollector(), newCollector()
		for i := range 1000 {
			a.Observe(&event.Event{Kind: event.Deliver, Client: 1, Latency: time.Duration(i) * time.Microsecond * 37})
			b.Observe(&event.Event{Kind: event.Deliver, Client: 1, Latency: time.Duration(i) * time.Microsecond * 91})
		}
		both := newCollector()
		for i := range 1000 {
			both.Observe(&event.Event{Kind: event.Deliver, Client: 1, Latency: time.Duration(i) * time.Microsecond * 37})
			both.Observe(&event.Event{Kind: event.Deliver, Client: 1, Latency: time.Duration(i) * time.Microsecond * 91})
		}
		h := a.Export()
		Expect(h.Merge(b.Export())).To(Succeed())
		want := both.Export()
		Expect(hdrhistogram.Import(h.Overall).Equals(hdrhistogram.Import(want.Overall))).To(BeTrue())
		Expect(hdrhistogram.Import(h.Roles["b"].Delivery).Equals(hdrhistogram.Import(want.Roles["b"].Delivery))).To(BeTrue())
	})
})
