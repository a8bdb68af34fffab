package check

import (
	"context"
	"fmt"

	"github.com/bidikit/bidikit/harness/event"
)

// order is the "total-order" checker: per chat room, no two members (and no
// ack) may disagree about which message holds a room sequence number
// (Jepsen's "inconsistent order"). A message is who sent it and its client
// message id; an ack names its message by the id alone (its sender is the
// harness's user, which a server may name its own way), so an ack and a
// delivery are compared by id. Deliveries and acks without a message id
// cannot be told apart and are not judged. It passes only when some seq
// was seen by two observers. State: one hash and first witness per (room,
// seq) — the owner is the dispatcher goroutine calling Observe.
type order struct {
	rooms    map[string]map[uint64]witness
	seen     int
	compared int // observations compared with a seq's first witness
	noID     int // deliveries and acks without a message id: not judged
	v        Verdict
}

type witness struct {
	key, idKey uint64 // (sender, id) and id alone
	ack        bool
	client     string
	msgID      string
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
	if e.MsgID == "" {
		o.noID++
		return
	}
	ack := e.Kind == event.Ack
	idKey := msgKey("", e.MsgID)
	room := o.rooms[e.Scope]
	if room == nil {
		room = map[uint64]witness{}
		o.rooms[e.Scope] = room
	}
	o.seen++
	w, ok := room[e.Seq]
	if !ok {
		room[e.Seq] = witness{key: key, idKey: idKey, ack: ack, client: clientName(e), msgID: msgID}
		return
	}
	o.compared++
	if same := w.key == key || ((w.ack || ack) && w.idKey == idKey); !same {
		o.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: clientName(e), At: e.At,
			Detail: fmt.Sprintf("%s saw %s at seq %d, but %s saw %s there", clientName(e), msgID, e.Seq, w.client, w.msgID)})
	}
}

func (o *order) Verdict(context.Context, Env) Verdict {
	if o.seen == 0 {
		if o.noID > 0 {
			return notMeasurable(&o.v, "%d deliveries and acks, none with a client message id to tell their messages apart", o.noID)
		}
		return notMeasurable(&o.v, "no chat deliveries or acks observed")
	}
	if o.compared == 0 {
		return notMeasurable(&o.v, "%d observations over %d rooms, but no seq was seen by two observers (members or the sender's ack): nothing to compare", o.seen, len(o.rooms))
	}
	summarise(&o.v, fmt.Sprintf("%d observations over %d rooms agree on one order per room (%d compared with a seq's first witness)", o.seen, len(o.rooms), o.compared),
		"%d sequence numbers held different messages for different members", o.v.Violations)
	if o.noID > 0 {
		o.v.Summary += fmt.Sprintf("; %d deliveries and acks without a client message id not judged", o.noID)
	}
	return o.v
}
