package streamhost_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/reference/streamhost"
)

var _ = Describe("FloodPolicy", func() {
	t0 := time.Unix(1000, 0)

	// refuse notes one refusal at each of the offsets and returns the index
	// of the first that tripped the policy (-1: none did).
	refuse := func(p streamhost.FloodPolicy, m *streamhost.FloodMeter, at ...time.Duration) int {
		for i, d := range at {
			if p.Refused(m, t0.Add(d), 1) {
				return i
			}
		}
		return -1
	}
	every := func(n int, step time.Duration) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(i) * step
		}
		return out
	}

	It("in a window: more than Limit refusals within one Window, the window opening at the first refusal", func() {
		p := streamhost.FloodPolicy{Mode: streamhost.FloodInWindow, Limit: 10, Window: time.Second}
		var m streamhost.FloodMeter
		Expect(refuse(p, &m, every(20, 10*time.Millisecond)...)).To(Equal(10), "the 11th within the window trips it")
		Expect(m.Count()).To(Equal(11))

		m = streamhost.FloodMeter{}
		Expect(refuse(p, &m, every(10, 10*time.Millisecond)...)).To(Equal(-1))
		Expect(p.Refused(&m, t0.Add(1100*time.Millisecond), 1)).To(BeFalse(), "a new window begins after the last one passed")
		Expect(m.Count()).To(Equal(1))
	})

	It("in a row: Limit refusals with no allowed event between them", func() {
		p := streamhost.FloodPolicy{Mode: streamhost.FloodInARow, Limit: 3}
		var m streamhost.FloodMeter
		Expect(p.Refused(&m, t0, 1)).To(BeFalse())
		Expect(p.Refused(&m, t0, 1)).To(BeFalse())
		p.Allowed(&m)
		Expect(p.Refused(&m, t0, 1)).To(BeFalse())
		Expect(p.Refused(&m, t0, 1)).To(BeFalse())
		Expect(p.Refused(&m, t0, 1)).To(BeTrue())
		Expect(m.Count()).To(Equal(3))
	})

	It("leaky: a bucket holding Limit that leaks Limit per Window", func() {
		p := streamhost.FloodPolicy{Mode: streamhost.FloodLeaky, Limit: 30, Window: 3 * time.Second}
		var m streamhost.FloodMeter
		// 5 drops per 100ms (50/s) against a leak of 1 per 100ms: the
		// bucket holds 5+4i after step i and trips past 30, at step 7
		tripped := -1
		for i := range 100 {
			if p.Refused(&m, t0.Add(time.Duration(i)*100*time.Millisecond), 5) {
				tripped = i
				break
			}
		}
		Expect(tripped).To(Equal(7))

		m = streamhost.FloodMeter{}
		// 9 drops per second stays below the leak of 10/s forever
		for i := range 600 {
			Expect(p.Refused(&m, t0.Add(time.Duration(i)*time.Second), 9)).To(BeFalse(), "step %d", i)
		}
		Expect(p.Refused(&m, t0.Add(601*time.Second), 31)).To(BeTrue(), "a burst over Limit at once trips it")
	})

	It("disabled (Limit <= 0): never trips", func() {
		for _, mode := range []streamhost.FloodMode{streamhost.FloodInWindow, streamhost.FloodInARow, streamhost.FloodLeaky} {
			var m streamhost.FloodMeter
			Expect(refuse(streamhost.FloodPolicy{Mode: mode, Window: time.Second}, &m, every(1000, time.Millisecond)...)).To(Equal(-1), "mode %d", mode)
		}
	})
})
