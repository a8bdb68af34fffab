package custom

import (
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/protocol"
)

// Handle classifies one server message through the mapping and emits what
// it means. A message no rule matches, or one a rule cannot read (a field
// expression failing at run time), emits an event.Unread: what it carried
// is unknown, and the checks must not take its absence for the server's.
func (d *driver) Handle(m proto.Message) {
	d.emitStart()
	got, err := d.m.Classify(d.got[:0], m)
	d.got = got
	if err != nil {
		d.unread(event.UnreadError, "the mapping failed on a server message: "+err.Error())
		return
	}
	now := time.Now()
	for i := range got {
		in := &got[i]
		switch in.Kind {
		case protocol.Unclassified:
			d.unread(event.UnreadUnmatched, "a server message matched none of protocol.incoming's rules (add one, or an ignore rule)")
		case protocol.Delivery:
			d.deliver(in, now)
		case protocol.Ack:
			d.ack(in, now)
		case protocol.Joined:
			d.joinedRoom(in)
		case protocol.Left:
			d.left(in)
		case protocol.ErrorEvent:
			d.refused(in)
		}
	}
}

// roomOf is the room in speaks of: the one its rule read; else, for an
// echo or a client in one room, the client's room; else "" (unknown).
func (d *driver) roomOf(in *protocol.Incoming) string {
	switch {
	case in.Has(protocol.FieldRoom):
		return in.Room
	case d.m.Echo() || len(d.rooms) == 1:
		return d.rooms[0]
	}
	return ""
}

// own finds the client's own message a delivery or ack speaks of: by its
// client message id, or (an echo's delivery) by its sender seq. Caller
// holds d.mu.
func (d *driver) own(in *protocol.Incoming, echo bool) *pending {
	if in.Has(protocol.FieldClientMsgID) {
		return d.pending[in.ClientMsgID]
	}
	if echo && in.Has(protocol.FieldSenderSeq) {
		return d.bySeq[in.SenderSeq]
	}
	return nil
}

func (d *driver) deliver(in *protocol.Incoming, now time.Time) {
	if in.Has(protocol.FieldSeq) && in.Seq == 0 {
		// Every check numbers a room's messages from 1 and reads seq 0 as
		// "no seq": judged as such, a 0-based offset's first message
		// would go unjudged.
		d.unread(event.UnreadError, "protocol.incoming.delivery.seq read 0: the checks number a room's messages from 1 (map a 0-based offset as offset + 1)")
		return
	}
	e := event.Event{Kind: event.Deliver, Scope: d.roomOf(in), Seq: in.Seq, Sender: in.Sender, MsgID: in.ClientMsgID,
		SenderSeq: in.SenderSeq, Replay: in.Replay}
	echo := d.m.Echo()
	if echo && !in.Has(protocol.FieldSender) {
		e.Sender = d.c.User()
	}
	if !in.Replay && in.SentAt > 0 {
		e.Latency = time.Duration(now.UnixNano() - in.SentAt)
	}
	d.mu.Lock()
	if in.Has(protocol.FieldSeq) && e.Scope != "" && in.Seq > d.pos[e.Scope] {
		d.pos[e.Scope] = in.Seq
	}
	if d.st.matchOwn && (echo || e.Sender == "" || e.Sender == d.c.User()) {
		if p := d.own(in, echo); p != nil && !p.own {
			p.own = true
			if e.Latency == 0 && !in.Replay {
				e.Latency = now.Sub(p.at)
			}
			if echo {
				e.MsgID, e.SenderSeq = p.id, p.seq
				if e.Scope == "" {
					e.Scope = p.room
				}
			}
			d.forget(p)
		}
	}
	d.mu.Unlock()
	d.c.Emit(&e)
}

func (d *driver) ack(in *protocol.Incoming, now time.Time) {
	e := event.Event{Kind: event.Ack, Scope: in.Room, MsgID: in.ClientMsgID, Seq: in.Seq, Duplicate: in.Duplicate,
		SenderSeq: in.SenderSeq}
	d.mu.Lock()
	p := d.own(in, false)
	if p != nil {
		if !in.Has(protocol.FieldRoom) {
			e.Scope = p.room
		}
		e.SenderSeq, e.Latency = p.seq, now.Sub(p.at)
		p.acked = true
		d.forget(p)
	} else if e.SenderSeq == 0 {
		// An earlier stream's or run's message: its id ends in its sender seq.
		if i := strings.LastIndexByte(in.ClientMsgID, '.'); i >= 0 {
			e.SenderSeq, _ = strconv.ParseUint(in.ClientMsgID[i+1:], 10, 64)
		}
	}
	if e.Scope == "" {
		e.Scope = d.roomOf(in)
	}
	d.mu.Unlock()
	d.c.Emit(&e)
}

// joinedRoom confirms a join: the room's sends go out (its unacknowledged
// messages first, oldest first). A joined rule that reads no room confirms
// the oldest join not yet confirmed.
func (d *driver) joinedRoom(in *protocol.Incoming) {
	d.mu.Lock()
	name := ""
	if in.Has(protocol.FieldRoom) {
		name = in.Room
	} else {
		for _, r := range d.rooms {
			if d.room(r).joining {
				name = r
				break
			}
		}
	}
	if name == "" {
		d.mu.Unlock()
		if in.Has(protocol.FieldRoom) {
			d.unread(event.UnreadError, `protocol.incoming.joined.room read "": which room the server confirmed is unknown`)
		}
		return
	}
	after, asked := d.asked[name]
	d.joined[name] = true
	if !asked && (!d.hasPos[name] || d.pos[name] < in.HeadSeq) {
		d.pos[name] = in.HeadSeq
	}
	if asked {
		d.pos[name] = after
	}
	d.hasPos[name] = true
	r := d.room(name)
	r.ready, r.joining, r.sent = true, false, 0
	d.mu.Unlock()
	d.poke()
	d.c.Emit(&event.Event{Kind: event.Join, Scope: name, Seq: in.HeadSeq, ResumeAfter: after, HasResume: asked,
		ReplayFrom: in.ReplayFrom, Complete: in.ResumeComplete})
}

// left ends a membership the server says is over.
func (d *driver) left(in *protocol.Incoming) {
	name := d.roomOf(in)
	d.mu.Lock()
	was := d.joined[name]
	delete(d.joined, name)
	if r := d.state[name]; r != nil {
		r.ready = false
	}
	d.mu.Unlock()
	if was {
		d.c.Emit(&event.Event{Kind: event.Leave, Scope: name})
	}
}

// refused reports a server error event; a message it names is refused for
// good (never resent).
func (d *driver) refused(in *protocol.Incoming) {
	e := event.Event{Kind: event.Error, Code: in.Code, Detail: in.Message, Scope: in.Room, MsgID: in.ClientMsgID}
	if in.Code == codes.OK {
		e.Field = event.FieldNoCode // unmapped, unset or 0: no status to judge
	}
	d.mu.Lock()
	if p := d.own(in, false); p != nil {
		if e.Scope == "" {
			e.Scope = p.room
		}
		p.acked, p.own = true, true
		d.forget(p)
	}
	d.mu.Unlock()
	d.c.Emit(&e)
}

// unread emits an event.Unread for a server message the mapping could not
// read, at most event.MaxUnreadPerStream per stream (receive loop; Ended
// resets the count).
func (d *driver) unread(field, detail string) {
	d.unreadN++
	if d.unreadN > event.MaxUnreadPerStream {
		return
	}
	if d.unreadN == event.MaxUnreadPerStream {
		detail += " (further unread messages on this stream are not reported)"
	}
	d.c.Emit(&event.Event{Kind: event.Unread, Field: field, Detail: detail})
}
