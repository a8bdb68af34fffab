package check

import (
	"context"
	"fmt"

	"github.com/bidikit/bidikit/harness/event"
)

// duplicates is the "no-duplicates" checker: one client message must be
// stored at exactly one room seq (resends are acked as duplicates of the
// first copy), and one membership must not receive the same seq twice.
type duplicates struct {
	stored map[string]map[uint64]uint64 // room -> message key -> seq
	names  map[string]map[uint64]string // room -> message key -> "sender/id" (for evidence)
	next   map[memberKey]uint64
	seen   int
	v      Verdict
}

func init() {
	Register("no-duplicates", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &duplicates{stored: map[string]map[uint64]uint64{}, names: map[string]map[uint64]string{},
			next: map[memberKey]uint64{}, v: Verdict{Name: "no-duplicates"}}, nil
	})
}

func (d *duplicates) record(e *event.Event, sender string) {
	key := msgKey(sender, e.MsgID)
	room := d.stored[e.Scope]
	if room == nil {
		room = map[uint64]uint64{}
		d.stored[e.Scope] = room
		d.names[e.Scope] = map[uint64]string{}
	}
	seq, ok := room[key]
	if !ok {
		room[key] = e.Seq
		return
	}
	if seq != e.Seq {
		d.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: clientName(e), At: e.At,
			Detail: fmt.Sprintf("message %s/%s stored twice: at seq %d and seq %d", sender, e.MsgID, seq, e.Seq)})
	}
}

func (d *duplicates) Observe(e *event.Event) {
	switch e.Kind {
	case event.Join:
		d.next[memberKey{e.Client, e.Scope}] = firstExpected(e)
	case event.Leave:
		delete(d.next, memberKey{e.Client, e.Scope})
	case event.Disconnect:
		for k := range d.next {
			if k.client == e.Client {
				delete(d.next, k)
			}
		}
	case event.Ack:
		if e.Seq > 0 && e.MsgID != "" {
			d.seen++
			d.record(e, e.User)
		}
	case event.Deliver:
		d.seen++
		if e.MsgID != "" {
			d.record(e, e.Sender)
		}
		k := memberKey{e.Client, e.Scope}
		if want, ok := d.next[k]; ok {
			if e.Seq < want {
				d.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: clientName(e), At: e.At,
					Detail: fmt.Sprintf("%s received seq %d again (already past it, expecting %d)", clientName(e), e.Seq, want)})
				return
			}
			d.next[k] = e.Seq + 1
		}
	}
}

func (d *duplicates) Verdict(context.Context, Env) Verdict {
	if d.seen == 0 {
		d.v.Status = NotMeasurable
		d.v.Summary = "no chat deliveries or acks observed"
		return d.v
	}
	summarise(&d.v, fmt.Sprintf("%d observations: every message stored and delivered once", d.seen),
		"%d duplicated messages or deliveries", d.v.Violations)
	return d.v
}
