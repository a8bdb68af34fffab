package check

import (
	"context"
	"fmt"

	"github.com/bidikit/bidikit/harness/event"
)

// order is the "total-order" checker: per chat room, no two members (and no
// ack) may disagree about which message holds a room sequence number
// (Jepsen's "inconsistent order"). State: one hash and first witness per
// (room, seq) — the owner is the dispatcher goroutine calling Observe.
type order struct {
	rooms map[string]map[uint64]witness
	seen  int
	v     Verdict
}

type witness struct {
	key    uint64
	client string
	msgID  string
}

func init() {
	Register("total-order", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &order{rooms: map[string]map[uint64]witness{}, v: Verdict{Name: "total-order"}}, nil
	})
}

func (o *order) Observe(e *event.Event) {
	var key uint64
	var msgID string
	switch e.Kind {
	case event.Deliver:
		key, msgID = msgKey(e.Sender, e.MsgID), e.Sender+"/"+e.MsgID
	case event.Ack:
		key, msgID = msgKey(e.User, e.MsgID), e.User+"/"+e.MsgID
	default:
		return
	}
	if e.Seq == 0 {
		return
	}
	room := o.rooms[e.Scope]
	if room == nil {
		room = map[uint64]witness{}
		o.rooms[e.Scope] = room
	}
	o.seen++
	w, ok := room[e.Seq]
	if !ok {
		room[e.Seq] = witness{key: key, client: clientName(e), msgID: msgID}
		return
	}
	if w.key != key {
		o.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: clientName(e), At: e.At,
			Detail: fmt.Sprintf("%s saw %s at seq %d, but %s saw %s there", clientName(e), msgID, e.Seq, w.client, w.msgID)})
	}
}

func (o *order) Verdict(context.Context, Env) Verdict {
	if o.seen == 0 {
		o.v.Status = NotMeasurable
		o.v.Summary = "no chat deliveries or acks observed"
		return o.v
	}
	summarise(&o.v, fmt.Sprintf("%d observations over %d rooms agree on one order per room", o.seen, len(o.rooms)),
		"%d sequence numbers held different messages for different members", o.v.Violations)
	return o.v
}
