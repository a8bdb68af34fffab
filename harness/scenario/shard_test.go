package scenario_test

import (
	"sort"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/scenario"
)

var _ = Describe("Plan.Shard", func() {
	DescribeTable("partitions the clients: disjoint, covering, balanced per role",
		func(seed int64, count int) {
			p := scenario.NewPlan(planScenario(seed))
			owner := map[int]int{}
			perRole := map[string][]int{} // role -> clients per shard
			for i := range count {
				share := p.Shard(i, count)
				Expect(sort.IntsAreSorted(share)).To(BeTrue(), "shard %d sorted", i)
				for _, c := range share {
					prev, dup := owner[c]
					Expect(dup).To(BeFalse(), "client %d in shards %d and %d", c, prev, i)
					owner[c] = i
					role := p.Clients[c].Role
					if perRole[role] == nil {
						perRole[role] = make([]int, count)
					}
					perRole[role][i]++
				}
			}
			Expect(owner).To(HaveLen(len(p.Clients)), "every client in some shard")
			for role, n := range perRole {
				Expect(slicesMax(n)-slicesMin(n)).To(BeNumerically("<=", 1), "role %s: %v", role, n)
			}
		},
		Entry("1 shard", int64(1), 1),
		Entry("2 shards", int64(42), 2),
		Entry("3 shards", int64(7), 3),
		Entry("7 shards", int64(7), 7),
		Entry("more shards than a role's clients", int64(3), 64),
	)

	It("is the same for the same seed and differs for another", func() {
		a := scenario.NewPlan(planScenario(42))
		b := scenario.NewPlan(planScenario(42))
		c := scenario.NewPlan(planScenario(43))
		Expect(a.Shard(1, 3)).To(Equal(b.Shard(1, 3)))
		Expect(a.Shard(1, 3)).NotTo(Equal(c.Shard(1, 3)))
	})

	It("does not change the plan's other choices", func() {
		p := scenario.NewPlan(planScenario(42))
		_ = p.Shard(0, 3)
		Expect(p).To(Equal(scenario.NewPlan(planScenario(42))))
	})

	It("gives nil for an index or count out of range", func() {
		p := scenario.NewPlan(planScenario(42))
		Expect(p.Shard(3, 3)).To(BeNil())
		Expect(p.Shard(-1, 3)).To(BeNil())
		Expect(p.Shard(0, 0)).To(BeNil())
	})
})

func slicesMax(xs []int) int {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func slicesMin(xs []int) int {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}
