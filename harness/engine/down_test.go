package engine_test

import (
	"fmt"
	"log/slog"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/matchers"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/refcluster"
)

// silentKiller is a fault.Server that kills like refcluster.Killer but does
// not say which target it took down (no engine.DownReporter).
type silentKiller struct{ fault.Server }

var _ engine.DownReporter = (*refcluster.Killer)(nil)

// killOneChat: chatters over two instances, instance A killed at 1 s, and
// status-codes (with %s) among the checks.
const killOneChat = `name: kill-one
service: chat
seed: 8
duration: 2500ms
ramp: 200ms
settle: 0s
roles:
  - {name: chatter, count: 4, behaviour: chatter, rooms: 1, rate: 10/s}
faults:
  - {fault: kill-server, at: 1s}
checks:
  - no-lost-acks
  - sender-fifo
  - status-codes: {%s}
`

var _ = Describe("health after a run that killed an instance", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	DescribeTable("is judged over the instances the run did not kill and those the scenario expects down; any other instance down fails status-codes",
		func(ctx SpecContext, reports bool, params string, pass bool) {
			log := slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError}))
			ins := refcluster.StartN(GinkgoT(), 2, refcluster.StartNATS(GinkgoT()).ClientURL(), log)
			s, err := scenario.Parse("kill-one.yaml", []byte(fmt.Sprintf(killOneChat, params)))
			Expect(err).NotTo(HaveOccurred())
			k := refcluster.NewKiller(ins[0])
			var srv fault.Server = k
			if !reports {
				srv = silentKiller{k}
			}
			res, err := engine.Run(ctx, s, engine.WithTargets(ins[0].Addr(), ins[1].Addr()), engine.WithFaultEnv(srv), engine.WithLogger(log))
			Expect(err).NotTo(HaveOccurred(), describe(res))
			Expect(k.Killed()).To(BeClosed(), "the kill-server fault never fired")
			Expect(res).To(matchers.PassCheck("no-lost-acks", "sender-fifo"), describe(res))
			for _, v := range res.Checks {
				if v.Name != "status-codes" {
					continue
				}
				if pass {
					Expect(v.Status).To(Equal(check.Pass), describe(res))
					if params != "" {
						Expect(v.Summary).To(ContainSubstring("1 of 2 targets still serving; down as the scenario expects: %s (target 1)", ins[0].Addr()))
					}
					return
				}
				Expect(v.Status).To(Equal(check.Fail), describe(res))
				Expect(v.Evidence).To(ContainElement(HaveField("Detail", And(ContainSubstring(ins[0].Addr()), ContainSubstring("no longer")))))
				return
			}
			Fail("no status-codes verdict")
		},
		Entry("the fault server reports what it killed", true, "", true, SpecTimeout(40*time.Second)),
		Entry("it does not: the dead instance fails status-codes", false, "", false, SpecTimeout(40*time.Second)),
		Entry("it does not, but the scenario expects target 1 down", false, "expect_down: [1]", true, SpecTimeout(40*time.Second)),
		Entry("the scenario expects another target down", false, "expect_down: [2]", false, SpecTimeout(40*time.Second)),
	)
})
