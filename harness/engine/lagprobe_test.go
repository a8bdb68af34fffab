package engine_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
)

var _ = Describe("the harness-lag probe", func() {
	It("reports the harness's own lag every window, for the checks to weigh", func(ctx SpecContext) {
		_, addr, stop := startRecorder(false)
		DeferCleanup(stop)
		s := &scenario.Scenario{Name: "lag", File: "lag.yaml", Service: scenario.Chat, Seed: 1, Duration: 1500 * time.Millisecond,
			Roles: []scenario.Role{{Name: "lurk", Count: 2, Behaviour: "lurker", Scopes: 1}}}
		log := &orderTap{}
		_, err := engine.Run(ctx, s, engine.WithTarget(addr), engine.WithTap(log))
		Expect(err).NotTo(HaveOccurred())

		var sched, dispatch []event.Event
		for _, e := range log.client(-1) {
			if e.Kind != event.HarnessLag {
				continue
			}
			Expect(e.Latency).To(BeNumerically(">=", 0))
			switch e.Field {
			case event.LagScheduler:
				sched = append(sched, e)
			case event.LagDispatch:
				dispatch = append(dispatch, e)
			default:
				Fail("a harness-lag event with field " + e.Field)
			}
		}
		// 1.5 s of run in 250 ms windows: about six of each.
		Expect(len(sched)).To(BeNumerically(">=", 3), "scheduler reports")
		Expect(len(dispatch)).To(Equal(len(sched)), "one dispatch report per scheduler report")
		for i := 1; i < len(sched); i++ {
			Expect(sched[i].At).To(BeNumerically(">", sched[i-1].At), "windows in order")
		}
	}, SpecTimeout(30*time.Second))
})
