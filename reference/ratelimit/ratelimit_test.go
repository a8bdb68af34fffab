package ratelimit_test

import (
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/reference/ratelimit"
)

var _ = Describe("Limiter", func() {
	It("shares one bucket among a key's streams", func() {
		l := ratelimit.New(0.001, 3)
		a := l.Acquire("ann")
		b := l.Acquire("ann")
		Expect(a).To(BeIdenticalTo(b))
		allowed := 0
		for i := 0; i < 10; i++ {
			if a.Allow() || b.Allow() {
				allowed++
			}
		}
		Expect(allowed).To(Equal(3), "the burst is shared, not per stream")
		l.Release("nobody") // harmless
	})
	It("does not give a fresh burst to a key that reconnects before its bucket refilled", func() {
		l := ratelimit.New(0.001, 3)
		a := l.Acquire("flooder")
		for a.Allow() {
		}
		l.Release("flooder")
		Expect(l.Keys()).To(Equal(1), "a spent bucket outlives its last stream")
		Expect(l.Acquire("flooder").Allow()).To(BeFalse(), "reconnecting must not reset the limit")
	})
	It("forgets a key once no stream holds it and its bucket is full", func() {
		l := ratelimit.New(1000, 2)
		b := l.Acquire("ann")
		Expect(b.Allow()).To(BeTrue())
		Eventually(func() float64 { return b.Tokens() }).WithTimeout(time.Second).Should(BeNumerically(">=", 2))
		l.Release("ann")
		Expect(l.Keys()).To(BeZero())
	})
	It("sweeps refilled idle buckets so memory stays bounded", func() {
		l := ratelimit.New(1e9, 1)
		for i := 0; i < 1000; i++ {
			k := strconv.Itoa(i)
			l.Acquire(k).Allow() // spend: the bucket stays after Release
			l.Release(k)
		}
		Expect(l.Keys()).To(BeNumerically("<", 200), "refilled idle buckets are swept")
	})
	It("keeps users apart", func() {
		l := ratelimit.New(0.001, 1)
		Expect(l.Acquire("ann").Allow()).To(BeTrue())
		Expect(l.Acquire("bob").Allow()).To(BeTrue())
		Expect(l.Acquire("ann").Allow()).To(BeFalse())
	})
	It("treats a rate <= 0 as unlimited", func() {
		l := ratelimit.New(0, 1)
		b := l.Acquire("x")
		for i := 0; i < 1000; i++ {
			Expect(b.Allow()).To(BeTrue())
		}
		l.Release("x")
		Expect(l.Keys()).To(BeZero())
	})
})
