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

var _ = Describe("roundRecorder", func() {
	It("keeps one histogram per ghz worker and counts every call's messages", func() {
		r := newRoundRecorder()
		h := &hookedRun{}
		a1 := r.timer(h, "g0c0")
		b := r.timer(h, "g1c0")
		Expect(a1.hist).NotTo(BeIdenticalTo(b.hist))
		_, err := a1.Send(nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(a1.Recv(nil, nil)).To(Succeed()) // no message: ignored
		a2 := r.timer(h, "g0c0")                // the worker's next call
		Expect(a2.hist).To(BeIdenticalTo(a1.hist))
		Expect(a2.times.wrote).To(BeZero()) // a fresh FIFO per call
		for range 2 {
			_, err := b.Send(nil)
			Expect(err).NotTo(HaveOccurred())
		}
		_, err = a2.Send(nil)
		Expect(err).NotTo(HaveOccurred())
		sent, hist := r.merged()
		Expect(sent).To(Equal(int64(4)))
		Expect(hist.TotalCount()).To(BeZero())
	})
})
