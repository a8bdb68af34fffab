package engine_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/scenario"
)

var _ = Describe("WithShard", func() {
	DescribeTable("refuses a shard that does not exist, before touching the network",
		func(ctx SpecContext, index, count int) {
			s := &scenario.Scenario{Name: "x", Service: scenario.Chat, Duration: time.Second,
				Roles: []scenario.Role{{Name: "a", Count: 1, Behaviour: "chatter"}}}
			res, err := engine.Run(ctx, s, engine.WithTarget("127.0.0.1:1"), engine.WithShard(index, count))
			Expect(err).To(MatchError(ContainSubstring("does not exist")))
			Expect(res.Failure).NotTo(BeEmpty())
		},
		Entry("index = count", 3, 3, SpecTimeout(5*time.Second)),
		Entry("negative index", -1, 3, SpecTimeout(5*time.Second)),
		Entry("no shards", 0, 0, SpecTimeout(5*time.Second)),
	)
})
