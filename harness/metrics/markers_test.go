package metrics_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/metrics"
	"github.com/bidikit/bidikit/harness/result"
)

var _ = Describe("per-role timelines and markers", func() {
	// roles: honest (clients 0-2), flooder (clients 3-4, an attack role).
	newAttackCollector := func() *metrics.Collector {
		return metrics.New([]metrics.RoleInfo{
			{Name: "honest", Behaviour: "chatter", Clients: 3},
			{Name: "flooder", Behaviour: "flooder", Clients: 2, Attack: true},
		}, []int{0, 0, 0, 1, 1})
	}

	It("gives each role its own timeline on the scenario's intervals", func() {
		c := newAttackCollector()
		for i := range 40 { // 4 s: honest sends 10/s and gets 10ms deliveries; the flooder sends 100/s in 1..2s
			at := time.Duration(i) * 100 * time.Millisecond
			c.Observe(&event.Event{Kind: event.Send, Client: i % 3, At: at})
			c.Observe(&event.Event{Kind: event.Deliver, Client: i % 3, At: at, Latency: 10 * time.Millisecond})
			if at >= time.Second && at < 2*time.Second {
				for k := range 10 {
					c.Observe(&event.Event{Kind: event.Send, Client: 3 + k%2, At: at})
				}
			}
		}
		c.Observe(&event.Event{Kind: event.Error, Client: 4, At: 1500 * time.Millisecond, Code: codes.ResourceExhausted})
		c.Finish(4 * time.Second)
		var s result.Scenario
		c.Fill(&s)
		Expect(s.Roles).To(HaveLen(2))
		honest, flooder := s.Roles[0].Timeline, s.Roles[1].Timeline
		Expect(honest).To(HaveLen(len(s.Timeline)))
		Expect(flooder).To(HaveLen(len(s.Timeline)))
		var hs, fs, fe float64
		for i, p := range s.Timeline {
			Expect(honest[i].AtS).To(Equal(p.AtS), "same intervals")
			Expect(honest[i].SentPerSec+flooder[i].SentPerSec).To(BeNumerically("~", p.SentPerSec, 1e-9), "the roles' sends add up to the scenario's")
			hs += honest[i].SentPerSec * 0.25
			fs += flooder[i].SentPerSec * 0.25
			fe += flooder[i].ErrorsPerSec * 0.25
			if honest[i].P99MS > 0 {
				Expect(honest[i].P99MS).To(BeNumerically("~", 10, 0.1))
			}
			Expect(flooder[i].P99MS).To(BeZero(), "the flooder received nothing")
		}
		Expect(hs).To(BeNumerically("~", 40, 1e-6))
		Expect(fs).To(BeNumerically("~", 100, 1e-6))
		Expect(fe).To(BeNumerically("~", 1, 1e-6))
	})

	It("marks each fault firing once, however many clients it hit, and a run-wide kill as a server kill", func() {
		c := newAttackCollector()
		for _, cl := range []int{0, 1, 3} { // firing 1 at 2s
			c.Observe(&event.Event{Kind: event.Fault, Client: cl, At: 2*time.Second + time.Duration(cl)*time.Microsecond, Detail: "abrupt-close", Seq: 1})
		}
		c.Observe(&event.Event{Kind: event.Fault, Client: 2, At: 2100 * time.Millisecond, Detail: "abrupt-close", Seq: 2})
		c.Observe(&event.Event{Kind: event.Fault, Client: -1, At: 3 * time.Second, Detail: "kill-server", Seq: 3})
		c.Observe(&event.Event{Kind: event.Fault, Client: -1, At: 3500 * time.Millisecond, Detail: "latency", Seq: 4})
		c.Finish(5 * time.Second)
		var s result.Scenario
		c.Fill(&s)
		Expect(s.Markers).To(HaveLen(4))
		Expect(s.Markers[0]).To(Equal(result.Marker{AtS: 2, Kind: result.MarkFault, Label: "abrupt-close",
			Detail: "fault abrupt-close fired on 3 clients of role honest, flooder"}))
		Expect(s.Markers[1].AtS).To(BeNumerically("~", 2.1, 1e-9))
		Expect(s.Markers[1].Detail).To(Equal("fault abrupt-close fired on 1 client of role honest"))
		Expect(s.Markers[2].Kind).To(Equal(result.MarkServerKill))
		Expect(s.Markers[3].Kind).To(Equal(result.MarkFault))
		Expect(s.Markers[3].Label).To(Equal("latency"))
		Expect(s.Markers[3].Detail).To(ContainSubstring("whole run"))
	})

	It("joins unnumbered fault events of one firing by time (raw files of older runs)", func() {
		c := newAttackCollector()
		c.Observe(&event.Event{Kind: event.Fault, Client: 0, At: 2 * time.Second, Detail: "cancel"})
		c.Observe(&event.Event{Kind: event.Fault, Client: 1, At: 2*time.Second + time.Millisecond, Detail: "cancel"})
		c.Observe(&event.Event{Kind: event.Fault, Client: 0, At: 4 * time.Second, Detail: "cancel"})
		c.Finish(5 * time.Second)
		var s result.Scenario
		c.Fill(&s)
		Expect(s.Markers).To(HaveLen(2))
		Expect(s.Markers[0].Detail).To(ContainSubstring("2 clients"))
		Expect(s.Markers[1].AtS).To(Equal(4.0))
	})

	It("marks an attack role's start, and its stop when its streams ended before the run's end", func() {
		run := func(flooderEnd time.Duration) []result.Marker {
			c := newAttackCollector()
			c.Observe(&event.Event{Kind: event.Connect, Client: 0, At: 100 * time.Millisecond})
			c.Observe(&event.Event{Kind: event.Connect, Client: 4, At: 1200 * time.Millisecond})
			c.Observe(&event.Event{Kind: event.Connect, Client: 3, At: 1100 * time.Millisecond})
			c.Observe(&event.Event{Kind: event.Disconnect, Client: 3, At: flooderEnd - time.Millisecond, Code: codes.Canceled})
			c.Observe(&event.Event{Kind: event.Disconnect, Client: 4, At: flooderEnd, Code: codes.Canceled})
			c.Observe(&event.Event{Kind: event.Disconnect, Client: 0, At: 9 * time.Second})
			c.Finish(10 * time.Second)
			var s result.Scenario
			c.Fill(&s)
			return s.Markers
		}
		ms := run(6 * time.Second)
		Expect(ms).To(HaveLen(2))
		Expect(ms[0]).To(Equal(result.Marker{AtS: 1.1, Kind: result.MarkAttackStart, Label: "flooder",
			Detail: "role flooder (flooder, 2 clients) started"}))
		Expect(ms[1]).To(Equal(result.Marker{AtS: 6, Kind: result.MarkAttackStop, Label: "flooder",
			Detail: "role flooder (flooder): its last stream or attack ended"}))
		Expect(run(9800*time.Millisecond)).To(HaveLen(1), "an attack that ran until the run's end has no stop marker")
	})

	It("marks an HTTP/2 attack role (no gRPC stream) by its attack start and stop events", func() {
		c := newAttackCollector()
		c.Observe(&event.Event{Kind: event.Attack, Client: 3, At: 2 * time.Second, Field: event.AttackStart, Scope: "rapid-reset"})
		c.Observe(&event.Event{Kind: event.Attack, Client: 3, At: 2500 * time.Millisecond, Field: "goaway", Scope: "rapid-reset"})
		c.Observe(&event.Event{Kind: event.Attack, Client: 3, At: 5 * time.Second, Field: event.AttackStop, Scope: "rapid-reset"})
		c.Finish(10 * time.Second)
		var s result.Scenario
		c.Fill(&s)
		Expect(s.Markers).To(HaveLen(2))
		Expect(s.Markers[0].Kind).To(Equal(result.MarkAttackStart))
		Expect(s.Markers[0].AtS).To(Equal(2.0))
		Expect(s.Markers[1].Kind).To(Equal(result.MarkAttackStop))
		Expect(s.Markers[1].AtS).To(Equal(5.0))
	})

	It("bounds the fault markers and says how many firings it left out", func() {
		c := newAttackCollector()
		for i := range result.MaxMarkers + 5 {
			c.Observe(&event.Event{Kind: event.Fault, Client: 0, At: time.Duration(i) * time.Second, Detail: "cancel", Seq: uint64(i + 1)})
		}
		c.Finish(time.Hour)
		var s result.Scenario
		c.Fill(&s)
		Expect(s.Markers).To(HaveLen(result.MaxMarkers))
		Expect(s.Markers[len(s.Markers)-1].Detail).To(ContainSubstring("and 5 later firings, not marked"))
	})
})
