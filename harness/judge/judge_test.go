package judge_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	_ "github.com/bidikit/bidikit/harness/engine" // registers the behaviours scenarios name
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/judge"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
)

const twoRoles = `name: j
service: chat
seed: 1
duration: 1s
roles:
  - {name: a, count: 3, behaviour: chatter, rooms: 1}
  - {name: b, count: 2, behaviour: lurker, rooms: 1}
checks: [no-gaps, delivery-order]
`

// noEnv is a check.Env with nothing behind it.
type noEnv struct{}

func (noEnv) AdminURL() string                                 { return "" }
func (noEnv) Channelz(context.Context) (int, int, bool, error) { return 0, 0, false, nil }
func (noEnv) Healthy(context.Context) (bool, error)            { return true, nil }

var _ = Describe("a judge", func() {
	var s *scenario.Scenario
	BeforeEach(func() {
		var err error
		s, err = scenario.Parse("j.yaml", []byte(twoRoles))
		Expect(err).NotTo(HaveOccurred())
	})

	It("counts only the clients it is told are its own", func() {
		plan := scenario.NewPlan(s)
		mine := plan.Mine(0, 2)
		j, err := judge.New(s, plan, func(i int) bool { return mine[i] })
		Expect(err).NotTo(HaveOccurred())
		var res result.Scenario
		j.Finish(&res, 0)
		n := 0
		for _, r := range res.Roles {
			n += r.Clients
		}
		own := 0
		for _, m := range mine {
			if m {
				own++
			}
		}
		Expect(n).To(Equal(own))
		Expect(own).To(BeNumerically("<", len(plan.Clients)))
	})

	It("judges the events it observed: a gap fails no-gaps and nothing else", func(ctx SpecContext) {
		j, err := judge.New(s, scenario.NewPlan(s), nil)
		Expect(err).NotTo(HaveOccurred())
		for _, e := range []event.Event{
			{Kind: event.Connect, Client: 3},
			{Kind: event.Join, Client: 3, Scope: "room-0"},
			{Kind: event.Deliver, Client: 3, Scope: "room-0", Seq: 1, MsgID: "m1"},
			{Kind: event.Deliver, Client: 3, Scope: "room-0", Seq: 3, MsgID: "m3"},
		} {
			j.Observe(&e)
		}
		res := result.Scenario{}
		j.Finish(&res, 1e9)
		j.Verdicts(ctx, noEnv{}, &res, nil)
		Expect(res.Passed).To(BeFalse())
		Expect(res.Checks).To(HaveLen(2))
		Expect(res.Checks[0].Name).To(Equal("no-gaps"))
		Expect(res.Checks[0].Status).To(Equal(check.Fail))
		Expect(res.Checks[1].Status).To(Equal(check.Pass), "delivery-order blamed for a gap")
	})

	It("takes a given verdict instead of asking the checker, and never passes an interrupted run", func(ctx SpecContext) {
		j, err := judge.New(s, scenario.NewPlan(s), nil)
		Expect(err).NotTo(HaveOccurred())
		res := result.Scenario{Interrupted: "SIGINT"}
		j.Verdicts(ctx, noEnv{}, &res, func(i int, _ check.Checker) (check.Verdict, bool) {
			return check.Verdict{Status: check.Pass, Summary: "given"}, true
		})
		Expect(res.Checks).To(HaveEach(HaveField("Summary", "given")))
		Expect(res.Checks[0].Name).To(Equal("no-gaps"))
		Expect(res.Passed).To(BeFalse())
	})

	It("refuses a bad check spec before anything runs", func() {
		bad, err := scenario.Parse("j.yaml", []byte(twoRoles))
		Expect(err).NotTo(HaveOccurred())
		bad.Checks = append(bad.Checks, scenario.CheckSpec{Name: "no-such"})
		_, err = judge.New(bad, scenario.NewPlan(bad), nil)
		Expect(err).To(MatchError(ContainSubstring(`check "no-such"`)))
	})
})
