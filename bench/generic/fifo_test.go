package generic

import (
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
)

var _ = Describe("sendTimes, the send-to-receive FIFO of one stream", func() {
	BeforeEach(func() {
		base := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(base))
		})
	})

	It("is empty at first and returns values in order across segments", func() {
		var q sendTimes
		_, ok := q.pop()
		Expect(ok).To(BeFalse())
		for round := range 3 {
			n := timeSegLen*2 + 7
			for i := range n {
				q.push(int64(round*1000 + i))
			}
			for i := range n {
				v, ok := q.pop()
				Expect(ok).To(BeTrue())
				Expect(v).To(Equal(int64(round*1000 + i)))
			}
			_, ok = q.pop()
			Expect(ok).To(BeFalse())
		}
	})

	It("hands every value from one producer goroutine to one consumer goroutine, in order", func(ctx SpecContext) {
		const n = 20 * timeSegLen
		var q sendTimes
		got := make([]int64, 0, n)
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range int64(n) {
				q.push(i)
			}
		})
		wg.Go(func() {
			deadline := time.Now().Add(30 * time.Second)
			for len(got) < n && time.Now().Before(deadline) {
				if v, ok := q.pop(); ok {
					got = append(got, v)
				}
			}
		})
		wg.Wait()
		Expect(got).To(HaveLen(n))
		for i, v := range got {
			if v != int64(i) {
				Fail("value out of order")
			}
		}
	}, SpecTimeout(60*time.Second))
})
