package scenario_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/scenario"
)

func planScenario(seed int64) *scenario.Scenario {
	return &scenario.Scenario{
		Name: "plan", Service: scenario.Chat, Seed: seed,
		Duration: 30 * time.Second, Ramp: 5 * time.Second,
		Roles: []scenario.Role{
			{Name: "honest", Count: 40, Behaviour: "chatter", Scopes: 10,
				Params: &engine.ChatterParams{BodyBytes: 8, RoomsPerClient: 3}},
			{Name: "lurk", Count: 10, Behaviour: "lurker", Scopes: 10, Start: time.Second,
				Params: &engine.LurkerParams{RoomsPerClient: 1}},
		},
		Faults: []scenario.FaultStep{
			{Fault: "cancel", Scope: fault.Stream,
				At: 2 * time.Second, Every: 3 * time.Second, Fraction: 0.25, Roles: []string{"honest"}, Probability: 0.7},
			{Fault: "latency", Scope: fault.Connection,
				At: 10 * time.Second, Probability: 1},
			{Fault: "abrupt", Scope: fault.Stream,
				At: 6 * time.Second, Count: 3, Probability: 1},
			{Fault: "never", Scope: fault.Stream,
				At: 1 * time.Second, Every: time.Second, Probability: 0},
		},
	}
}

var _ = Describe("NewPlan", func() {
	It("is the same for the same seed", func() {
		Expect(scenario.NewPlan(planScenario(42))).To(Equal(scenario.NewPlan(planScenario(42))))
	})

	It("differs for a different seed", func() {
		a, b := scenario.NewPlan(planScenario(42)), scenario.NewPlan(planScenario(43))
		Expect(a.Clients).NotTo(Equal(b.Clients))
		Expect(a.Firings).NotTo(Equal(b.Firings))
	})

	It("plans every client with its role, user, distinct scopes and a start within the ramp", func() {
		s := planScenario(7)
		p := scenario.NewPlan(s)
		Expect(p.Clients).To(HaveLen(50))
		seeds := map[uint64]bool{}
		for i, c := range p.Clients {
			Expect(c.Index).To(Equal(i))
			seeds[c.Seed] = true
			if i < 40 {
				Expect(c.Role).To(Equal("honest"))
				Expect(c.RoleIndex).To(Equal(0))
				Expect(c.Scopes).To(HaveLen(3))
				Expect(c.StartAt).To(BeNumerically("<", s.Ramp))
			} else {
				Expect(c.Role).To(Equal("lurk"))
				Expect(c.Scopes).To(HaveLen(1))
				Expect(c.StartAt).To(BeNumerically(">=", time.Second))
				Expect(c.StartAt).To(BeNumerically("<", time.Second+s.Ramp))
			}
			seen := map[string]bool{}
			for _, sc := range c.Scopes {
				Expect(sc).To(MatchRegexp(`^room-\d$`))
				Expect(seen[sc]).To(BeFalse(), "scope %s twice for client %d", sc, i)
				seen[sc] = true
			}
		}
		Expect(p.Clients[0].User).To(Equal("honest-0"))
		Expect(p.Clients[45].User).To(Equal("lurk-5"))
		Expect(seeds).To(HaveLen(50))
		// Every room gets a first member.
		firsts := map[string]bool{}
		for _, c := range p.Clients[:40] {
			firsts[c.Scopes[0]] = true
		}
		Expect(firsts).To(HaveLen(10))
	})

	It("schedules faults in time order with the chosen clients from the right roles", func() {
		p := scenario.NewPlan(planScenario(42))
		var cancels, latency, abrupt int
		last := time.Duration(-1)
		for _, f := range p.Firings {
			Expect(f.At).To(BeNumerically(">=", last))
			last = f.At
			switch f.Step {
			case 0:
				cancels++
				if f.At >= 5*time.Second { // after the ramp: 25% of 40
					Expect(f.Clients).To(HaveLen(10))
				} else {
					Expect(len(f.Clients)).To(BeNumerically("<=", 10))
				}
				for _, c := range f.Clients {
					Expect(c).To(BeNumerically("<", 40))
				}
				Expect((f.At - 2*time.Second) % (3 * time.Second)).To(BeZero())
			case 1:
				latency++
				Expect(f.Clients).To(BeEmpty())
			case 2:
				abrupt++
				Expect(f.Clients).To(HaveLen(3))
			default:
				Fail("a step with probability 0 fired")
			}
		}
		// 10 possible firings (2s, 5s, ... 29s) at probability 0.7.
		Expect(cancels).To(BeNumerically(">", 0))
		Expect(cancels).To(BeNumerically("<", 10))
		Expect(latency).To(Equal(1))
		Expect(abrupt).To(Equal(1))
	})

	It("chooses only clients that are active at the firing", func() {
		s := planScenario(9)
		s.Faults = []scenario.FaultStep{{Fault: "cancel", Scope: fault.Stream,
			At: 2 * time.Second, Probability: 1}}
		p := scenario.NewPlan(s)
		Expect(p.Firings).To(HaveLen(1))
		Expect(p.Firings[0].Clients).NotTo(BeEmpty())
		for _, i := range p.Firings[0].Clients {
			Expect(p.Clients[i].StartAt).To(BeNumerically("<=", 2*time.Second))
		}
		Expect(len(p.Firings[0].Clients)).To(BeNumerically("<", 50))
	})
})
