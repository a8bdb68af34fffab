package ratelimit_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/reference/ratelimit"
)

var _ = Describe("Limiter", func() {
	It("shares one bucket among a key's streams and forgets it after the last release", func() {
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
		Expect(l.Keys()).To(Equal(1))
		l.Release("ann")
		Expect(l.Keys()).To(Equal(1))
		l.Release("ann")
		Expect(l.Keys()).To(BeZero())
		l.Release("nobody") // harmless
	})
	It("keeps users apart", func() {
		l := ratelimit.New(0.001, 1)
		Expect(l.Acquire("ann").Allow()).To(BeTrue())
		Expect(l.Acquire("bob").Allow()).To(BeTrue())
		Expect(l.Acquire("ann").Allow()).To(BeFalse())
	})
	It("treats a rate <= 0 as unlimited", func() {
		b := ratelimit.New(0, 1).Acquire("x")
		for i := 0; i < 1000; i++ {
			Expect(b.Allow()).To(BeTrue())
		}
	})
})
