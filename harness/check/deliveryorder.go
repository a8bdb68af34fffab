package check

import (
	"context"
	"fmt"
	"time"

	"github.com/bidikit/bidikit/harness/event"
)

// deliveryOrder is the "delivery-order" checker: within one membership (a
// Join until its Leave, its stream's Disconnect or the next Join), a member
// receives a room's seqs strictly ascending. A seq that arrives after a
// higher one, and had not arrived before, is a violation naming the member,
// both seqs and both times. A seq received twice is left to "no-duplicates"
// (a repeat is not a reordering); a seq never received to "no-gaps".
type deliveryOrder struct {
	members    memberships[*orderState]
	deliveries int
	compared   int // deliveries that followed another in their membership
	v          Verdict
}

// orderState is one membership's progress: the highest seq so far, when
// it came, and every seq received (to tell a late first arrival from a
// repeat).
type orderState struct {
	top   uint64
	topAt time.Duration
	got   seqSet
}

func init() {
	Register("delivery-order", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &deliveryOrder{members: newMemberships[*orderState](), v: Verdict{Name: "delivery-order"}}, nil
	})
}

func (d *deliveryOrder) Observe(e *event.Event) {
	d.members.track(e, func(*event.Event) *orderState { return &orderState{} }, nil)
	if e.Kind == event.Deliver {
		s, ok := d.members.get(e)
		if !ok || e.Seq == 0 {
			return
		}
		d.deliveries++
		if s.top != 0 {
			d.compared++
		}
		fresh := s.got.add(e.Seq)
		if e.Seq > s.top {
			s.top, s.topAt = e.Seq, e.At
			return
		}
		if fresh && e.Seq < s.top {
			d.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: clientName(e), At: e.At,
				Detail: fmt.Sprintf("%s received seq %d at %s after seq %d at %s", clientName(e), e.Seq, at(e.At), s.top, at(s.topAt))})
		}
	}
}

func (d *deliveryOrder) Verdict(context.Context, Env) Verdict {
	if d.deliveries == 0 {
		return notMeasurable(&d.v, "no deliveries to a joined member observed (%d memberships)", d.members.opened)
	}
	if d.compared == 0 {
		return notMeasurable(&d.v, "%d deliveries, but no membership received two: no order to judge (%d memberships)", d.deliveries, d.members.opened)
	}
	summarise(&d.v, fmt.Sprintf("%d deliveries over %d memberships arrived in ascending seq order", d.deliveries, d.members.opened),
		"%d deliveries arrived after a higher seq", d.v.Violations)
	return d.v
}
