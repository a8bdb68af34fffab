package check

import (
	"context"
	"fmt"

	"github.com/bidikit/bidikit/harness/event"
)

// duplicates is the "no-duplicates" checker. It counts only true repeats:
// one client message stored at two room seqs (a resend must be acked as a
// duplicate of the first copy); one membership receiving the same seq twice
// (a late first arrival is a reordering, judged by "delivery-order", not a
// repeat); and one client getting two Ack frames for the same message (a
// client resends only what was never acknowledged, so a second Ack answers
// nothing).
type duplicates struct {
	stored     map[string]map[uint64]uint64 // room -> message key -> seq
	got        memberships[*seqSet]         // open memberships -> seqs received
	acked      map[uint64]uint64            // hash(client, msgID) -> seq of the first Ack
	deliveries int
	acks       int
	resends    int // acks that said "duplicate": a resend found its first copy
	v          Verdict
}

func init() {
	Register("no-duplicates", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &duplicates{stored: map[string]map[uint64]uint64{}, got: newMemberships[*seqSet](),
			acked: map[uint64]uint64{}, v: Verdict{Name: "no-duplicates"}}, nil
	})
}

// record notes that sender's message msgID holds seq in e's room.
func (d *duplicates) record(e *event.Event, sender string) {
	key := msgKey(sender, e.MsgID)
	room := d.stored[e.Scope]
	if room == nil {
		room = map[uint64]uint64{}
		d.stored[e.Scope] = room
	}
	seq, ok := room[key]
	if !ok {
		room[key] = e.Seq
		return
	}
	if seq != e.Seq {
		detail := fmt.Sprintf("message %s/%s stored twice: at seq %d and seq %d", sender, e.MsgID, seq, e.Seq)
		if e.Kind == event.Ack && e.Duplicate {
			// The server said it did not store the resend: what it got
			// wrong is the seq it named for the first copy.
			detail = fmt.Sprintf("the resend of %s/%s was acked as a duplicate at seq %d, but its first copy holds seq %d", sender, e.MsgID, e.Seq, seq)
		}
		d.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: clientName(e), At: e.At, Detail: detail})
		room[key] = min(seq, e.Seq) // report each further copy once
	}
}

func (d *duplicates) Observe(e *event.Event) {
	d.got.track(e, func(*event.Event) *seqSet { return &seqSet{} }, nil)
	switch e.Kind {
	case event.Ack:
		if e.Seq == 0 || e.MsgID == "" {
			return
		}
		d.acks++
		if e.Duplicate {
			d.resends++
		}
		d.record(e, e.User)
		ak := msgKey(fmt.Sprint(e.Client), e.Scope+"\x00"+e.MsgID)
		if first, ok := d.acked[ak]; ok {
			d.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: clientName(e), At: e.At,
				Detail: fmt.Sprintf("%s got a second Ack for %s (seq %d; first Ack said seq %d) without resending it", clientName(e), e.MsgID, e.Seq, first)})
			return
		}
		d.acked[ak] = e.Seq
	case event.Deliver:
		if e.Seq == 0 {
			return
		}
		d.deliveries++
		if e.MsgID != "" {
			d.record(e, e.Sender)
		}
		if s, ok := d.got.get(e); ok && !s.add(e.Seq) {
			d.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: clientName(e), At: e.At,
				Detail: fmt.Sprintf("%s received seq %d twice in one membership", clientName(e), e.Seq)})
		}
	}
}

func (d *duplicates) Verdict(context.Context, Env) Verdict {
	if d.deliveries+d.acks == 0 {
		return notMeasurable(&d.v, "no sequenced deliveries or acks observed")
	}
	summarise(&d.v, fmt.Sprintf("%d deliveries and %d acks (%d of them resends acked as duplicates of their first copy): every message stored once, no seq received twice, no Ack repeated",
		d.deliveries, d.acks, d.resends),
		"%d duplicated messages, deliveries or acks", d.v.Violations)
	return d.v
}
