package engine

import (
	"math/rand/v2"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("the pacer", func() {
	It("wakes at every slot and sends one message there, not two every other slot", func() {
		now := time.Unix(1_700_000_000, 0)
		p := newPacer(now, 30, rand.New(rand.NewPCG(1, 2)))
		sent := 0
		for range 300 {
			now = now.Add(p.wait(now))
			n, skipped := p.due(now)
			Expect(skipped).To(BeZero())
			Expect(n).To(Equal(1), "slot %d", p.n)
			sent += n
		}
		Expect(sent).To(Equal(300))
	})
	It("catches up on slots a late sender missed, up to maxCatchUp", func() {
		now := time.Unix(1_700_000_000, 0)
		p := newPacer(now, 100, rand.New(rand.NewPCG(3, 4)))
		now = now.Add(p.wait(now))
		Expect(p.due(now)).To(Equal(1))
		n, skipped := p.due(now.Add(100 * time.Millisecond))
		Expect(n + skipped).To(Equal(10))
		Expect(n).To(Equal(min(10, maxCatchUp)))
	})
})
