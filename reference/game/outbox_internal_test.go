package game

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/proto"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
)

var _ = Describe("outbox", func() {
	delta := func(tick uint64) *frame { return &frame{tick: tick} }
	full := func(tick uint64) func() *frame { return func() *frame { return &frame{tick: tick, full: true} } }
	ev := &gamev1.ServerEvent{Event: &gamev1.ServerEvent_Left{Left: &gamev1.Left{Match: "m"}}}
	pop := func(o *outbox) []item {
		GinkgoHelper()
		batch, err := o.q.Pop(context.Background(), nil)
		Expect(err).NotTo(HaveOccurred())
		o.popped(batch)
		return batch
	}

	It("queues a delta when the reader keeps up", func() {
		o := newOutbox(16, 1<<20, 1, nil)
		for tick := uint64(1); tick <= 3; tick++ {
			o.pushTick(delta(tick), full(tick), personal{})
			batch := pop(o)
			Expect(batch).To(HaveLen(1))
			Expect(batch[0].f.full).To(BeFalse())
			Expect(batch[0].f.tick).To(Equal(tick))
		}
	})

	It("replaces stale tick updates by one full update of the newest tick", func() {
		resyncs := 0
		o := newOutbox(16, 1<<20, 1, func() { resyncs++ })
		for tick := uint64(1); tick <= 10; tick++ {
			o.pushTick(delta(tick), full(tick), personal{lastInput: tick})
		}
		batch := pop(o)
		Expect(batch).To(HaveLen(1))
		Expect(batch[0].f.full).To(BeTrue())
		Expect(batch[0].f.tick).To(Equal(uint64(10)))
		Expect(batch[0].per.lastInput).To(Equal(uint64(10)))
		Expect(resyncs).To(Equal(9))
	})

	It("never discards an event: ticks queue behind it as full updates until it is popped", func() {
		o := newOutbox(16, 1<<20, 1, nil)
		o.pushTick(delta(1), full(1), personal{})
		Expect(o.pushEvent(ev, nil)).To(BeTrue())
		o.pushTick(delta(2), full(2), personal{})
		o.pushTick(delta(3), full(3), personal{})
		batch := pop(o)
		Expect(batch).To(HaveLen(4))
		Expect(batch[1].ev).To(Equal(ev))
		Expect([]bool{batch[2].f.full, batch[3].f.full}).To(Equal([]bool{true, true}))
		// Once the event is popped, Replace applies again.
		o.pushTick(delta(4), full(4), personal{})
		o.pushTick(delta(5), full(5), personal{})
		batch = pop(o)
		Expect(batch).To(HaveLen(1))
		Expect(batch[0].f.tick).To(Equal(uint64(5)))
	})

	It("tolerates MaxQueuedTicks unsent deltas before resynchronising", func() {
		o := newOutbox(16, 1<<20, 3, nil)
		for tick := uint64(1); tick <= 3; tick++ {
			o.pushTick(delta(tick), full(tick), personal{})
		}
		n, _ := o.q.Len()
		Expect(n).To(Equal(3))
		o.pushTick(delta(4), full(4), personal{})
		batch := pop(o)
		Expect(batch).To(HaveLen(1))
		Expect(batch[0].f.full).To(BeTrue())
		Expect(batch[0].f.tick).To(Equal(uint64(4)))
	})

	It("queues best-effort errors only while no event is unsent", func() {
		o := newOutbox(16, 1<<20, 1, nil)
		Expect(o.pushEventIfIdle(ev)).To(BeTrue())
		Expect(o.pushEventIfIdle(ev)).To(BeFalse())
		pop(o)
		Expect(o.pushEventIfIdle(ev)).To(BeTrue())
	})

	It("encodes shared frame plus personal fields as one ServerEvent", func() {
		tu := &gamev1.TickUpdate{Match: "m", Tick: 7, Full: true, Players: []*gamev1.PlayerState{{PlayerId: "a#1", X: 1, Y: 2, LastInput: 3}}, Removed: []string{"b#2"}, ServerUnixNanos: 99}
		b, err := proto.Marshal(tu)
		Expect(err).NotTo(HaveOccurred())
		it := item{f: &frame{b: b, tick: 7, full: true}, per: personal{lastInput: 3, lastInputSent: 1234, dropped: 5}}
		var got gamev1.ServerEvent
		Expect(proto.Unmarshal(it.appendEncoded(nil), &got)).To(Succeed())
		want := proto.Clone(tu).(*gamev1.TickUpdate)
		want.YourLastInput, want.YourLastInputSentUnixNanos, want.DroppedInputs = 3, 1234, 5
		Expect(proto.Equal(got.GetTick(), want)).To(BeTrue(), "got %v", got.GetTick())
	})
})
