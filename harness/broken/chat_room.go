package broken

import (
	"sort"
	"sync"
	"time"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// room is one chat room. mu guards everything in it: the sequence, the
// stored messages (kept for the server's life: this is a test server), the
// resend index and the members. Pushes to members happen with mu held, so
// every member's queue receives the room's messages in seq order.
type room struct {
	name    string
	mu      sync.Mutex
	seq     uint64
	msgs    []*chatv1.Message // ascending seq
	ids     map[string]uint64 // sender + "\x00" + client_msg_id -> seq
	members map[*member]*sub
}

// sub is one member's subscription to a room (guarded by the room's mu).
type sub struct {
	delivered int // live messages pushed
}

// join subscribes m, first queueing Joined and, for a resume, the messages
// after resumeAfter as one replayed batch: nothing published meanwhile can
// fall between replay and live.
func (r *room) join(d ChatDefect, m *member, resumeAfter *uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := &chatv1.Joined{Room: r.name, HeadSeq: r.seq, ResumeComplete: true}
	if len(r.msgs) > 0 {
		j.OldestRetainedSeq = r.msgs[0].Seq
	}
	var replay []*chatv1.Message
	if resumeAfter != nil {
		from := *resumeAfter + 1
		if d == ResumeSeamOffByOne {
			from++ // defect: ResumeSeamOffByOne (and Joined still says resume_complete)
		}
		i := sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].Seq >= from })
		for _, msg := range r.msgs[i:] {
			replay = append(replay, &chatv1.Message{Room: msg.Room, Seq: msg.Seq, Sender: msg.Sender,
				ClientMsgId: msg.ClientMsgId, SenderSeq: msg.SenderSeq, Body: msg.Body,
				ServerUnixNanos: msg.ServerUnixNanos, ClientSentUnixNanos: msg.ClientSentUnixNanos, Replay: true})
		}
		if len(replay) > 0 {
			j.ReplayFrom = replay[0].Seq
		}
	}
	j.Members = append(j.Members, m.user)
	for other := range r.members {
		if other.user != m.user {
			j.Members = append(j.Members, other.user)
		}
	}
	m.push(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{Joined: j}})
	if len(replay) > 0 {
		m.push(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Batch{Batch: &chatv1.MessageBatch{Messages: replay}}})
	}
	r.members[m] = &sub{}
}

// leave unsubscribes m.
func (r *room) leave(m *member) {
	r.mu.Lock()
	delete(r.members, m)
	r.mu.Unlock()
}

// publish orders one Send: a resend of a stored client_msg_id is acked as
// a duplicate of the first copy; anything else gets the next seq, is
// stored, pushed to every member and acked to its sender.
func (r *room) publish(d ChatDefect, m *member, in *chatv1.Send) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := m.user + "\x00" + in.ClientMsgId
	if seq, ok := r.ids[key]; ok && d != ResendStoredTwice { // defect: ResendStoredTwice (stores it again below)
		m.push(ack(in, seq, true))
		return
	}
	r.seq++
	if d == SeqGap && r.seq%10 == 0 {
		r.seq++ // defect: SeqGap (seq 10, 20, ... is never used)
	}
	if d == AckNeverStored && r.seq%9 == 0 {
		m.push(ack(in, r.seq, false)) // defect: AckNeverStored (acked, never stored nor broadcast)
		return
	}
	msg := &chatv1.Message{Room: r.name, Seq: r.seq, Sender: m.user, ClientMsgId: in.ClientMsgId,
		SenderSeq: in.SenderSeq, Body: in.Body, ServerUnixNanos: time.Now().UnixNano(),
		ClientSentUnixNanos: in.ClientSentUnixNanos}
	r.msgs = append(r.msgs, msg)
	r.ids[key] = r.seq
	ev := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: msg}}
	for other, s := range r.members {
		if d == DropSubscription && other.odd && s.delivered >= dropAfter {
			continue // defect: DropSubscription (silently, the stream stays open)
		}
		s.delivered++
		other.push(ev)
	}
	m.push(ack(in, r.seq, false))
}

func ack(in *chatv1.Send, seq uint64, dup bool) *chatv1.ServerEvent {
	return &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{Room: in.Room, ClientMsgId: in.ClientMsgId,
		Seq: seq, Duplicate: dup, ServerUnixNanos: time.Now().UnixNano()}}}
}
