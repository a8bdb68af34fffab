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
	open       map[memberKey]*orderState
	members    int
	deliveries int
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
		return &deliveryOrder{open: map[memberKey]*orderState{}, v: Verdict{Name: "delivery-order"}}, nil
	})
}

func (d *deliveryOrder) Observe(e *event.Event) {
	k := memberKey{e.Client, e.Scope}
	switch e.Kind {
	case event.Join:
		d.members++
		d.open[k] = &orderState{}
	case event.Leave:
		delete(d.open, k)
	case event.Disconnect:
		for mk := range d.open {
			if mk.client == e.Client {
				delete(d.open, mk)
			}
		}
	case event.Deliver:
		s := d.open[k]
		if s == nil || e.Seq == 0 {
			return
		}
		d.deliveries++
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
		return notMeasurable(&d.v, "no deliveries to a joined member observed (%d memberships)", d.members)
	}
	summarise(&d.v, fmt.Sprintf("%d deliveries over %d memberships arrived in ascending seq order", d.deliveries, d.members),
		"%d deliveries arrived after a higher seq", d.v.Violations)
	return d.v
}
