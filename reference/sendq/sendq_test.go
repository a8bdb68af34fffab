package sendq_test

import (
	"context"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/reference/sendq"
)

var _ = Describe("Queue", func() {
	BeforeEach(func() {
		base := gleak.Goroutines()
		DeferCleanup(func() { Eventually(gleak.Goroutines).ShouldNot(gleak.HaveLeaked(base)) })
	})

	It("delivers pushed items in order, in batches", func(ctx SpecContext) {
		q := sendq.New[int](10, 1000)
		for i := 1; i <= 3; i++ {
			Expect(q.Push(i, 1)).To(BeTrue())
		}
		batch, err := q.Pop(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(batch).To(Equal([]int{1, 2, 3}))
		items, bytes := q.Len()
		Expect(items).To(BeZero())
		Expect(bytes).To(BeZero())
	}, SpecTimeout(5*time.Second))

	It("overflows on the message bound without blocking and reports it after the queued items", func(ctx SpecContext) {
		q := sendq.New[int](2, 1000)
		Expect(q.Push(1, 1)).To(BeTrue())
		Expect(q.Push(2, 1)).To(BeTrue())
		Expect(q.Push(3, 1)).To(BeFalse())
		Expect(q.Push(4, 1)).To(BeFalse(), "a finished queue refuses everything")
		batch, err := q.Pop(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(batch).To(Equal([]int{1, 2}))
		_, err = q.Pop(ctx, nil)
		Expect(err).To(MatchError(sendq.ErrOverflow))
	}, SpecTimeout(5*time.Second))

	It("overflows on the byte bound", func(ctx SpecContext) {
		q := sendq.New[string](100, 10)
		Expect(q.Push("a", 6)).To(BeTrue())
		Expect(q.Push("b", 6)).To(BeFalse())
		_, _ = q.Pop(ctx, nil)
		_, err := q.Pop(ctx, nil)
		Expect(err).To(MatchError(sendq.ErrOverflow))
	}, SpecTimeout(5*time.Second))

	It("Replace keeps only the newest value and never overflows", func(ctx SpecContext) {
		q := sendq.New[int](1, 10)
		Expect(q.Push(1, 5)).To(BeTrue())
		for i := 2; i <= 100; i++ {
			Expect(q.Replace(i, 5)).To(BeTrue())
		}
		batch, err := q.Pop(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(batch).To(Equal([]int{100}))
	}, SpecTimeout(5*time.Second))

	It("Pop blocks until a push, and returns when ctx ends", func(ctx SpecContext) {
		q := sendq.New[int](10, 100)
		got := make(chan []int, 1)
		go func() {
			b, _ := q.Pop(ctx, nil)
			got <- b
		}()
		Consistently(got, 50*time.Millisecond).ShouldNot(Receive())
		q.Push(7, 1)
		Eventually(got).Should(Receive(Equal([]int{7})))

		short, cancel := context.WithCancel(ctx)
		cancel()
		_, err := q.Pop(short, nil)
		Expect(err).To(MatchError(context.Canceled))
	}, SpecTimeout(5*time.Second))

	It("Close lets the consumer drain, then says closed", func(ctx SpecContext) {
		q := sendq.New[int](10, 100)
		q.Push(1, 1)
		q.Close()
		q.Close()
		Expect(q.Push(2, 1)).To(BeFalse())
		b, err := q.Pop(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(b).To(Equal([]int{1}))
		_, err = q.Pop(ctx, nil)
		Expect(err).To(MatchError(sendq.ErrClosed))
	}, SpecTimeout(5*time.Second))

	It("never loses or reorders items from concurrent producers", func(ctx SpecContext) {
		const producers, each = 8, 500
		q := sendq.New[[2]int](producers*each, producers*each)
		var wg sync.WaitGroup
		for p := 0; p < producers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					Expect(q.Push([2]int{p, i}, 1)).To(BeTrue())
				}
			}()
		}
		next := make([]int, producers)
		total := 0
		var buf [][2]int
		for total < producers*each {
			var err error
			buf, err = q.Pop(ctx, buf[:0])
			Expect(err).NotTo(HaveOccurred())
			for _, it := range buf {
				Expect(it[1]).To(Equal(next[it[0]]), "producer %d out of order", it[0])
				next[it[0]]++
				total++
			}
		}
		wg.Wait()
	}, SpecTimeout(10*time.Second))
})
