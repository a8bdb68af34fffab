package engine

import (
	"math"
	"runtime"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("the run-queue lag", func() {
	buckets := []float64{0, 1e-6, 1e-3, 1, math.Inf(1)}
	It("is the 99th percentile of the waits recorded since the last window", func() {
		Expect(percentile(buckets, []uint64{100, 0, 0, 0}, nil, 0.99)).To(Equal(time.Microsecond))
		// 98 short waits and 2 of up to a second: the 99th is a long one.
		Expect(percentile(buckets, []uint64{98, 0, 2, 0}, nil, 0.99)).To(Equal(time.Second))
		// The same histogram later: only what came since counts.
		Expect(percentile(buckets, []uint64{198, 0, 2, 0}, []uint64{98, 0, 2, 0}, 0.99)).To(Equal(time.Microsecond))
		Expect(percentile(buckets, []uint64{98, 0, 2, 0}, []uint64{98, 0, 2, 0}, 0.99)).To(BeZero(), "nothing new")
		Expect(percentile(buckets, []uint64{0, 0, 0, 5}, nil, 0.99)).To(Equal(time.Second), "an infinite bound gives the lower one")
	})
	It("sees goroutines kept waiting by a crowded run queue", func() {
		q := newRunQueueLag()
		// More goroutines spinning than there are Ps: each waits runnable
		// while the others run, for at least a few scheduler time slices.
		var wg sync.WaitGroup
		stop := time.Now().Add(200 * time.Millisecond)
		for range 4 * runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				for time.Now().Before(stop) { // bounded: 200 ms
				}
			})
		}
		wg.Wait()
		Expect(q.window()).To(BeNumerically(">", 0))
	})
})
