package chatclient

import (
	"strconv"
	"strings"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// Join is a Join of room: from the live head when after is nil, else
// resuming after *after (the server replays what came since).
func Join(room string, after *uint64) *chatv1.ClientEvent {
	return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: room, ResumeAfter: after}}}
}

// Leave is a Leave of room.
func Leave(room string) *chatv1.ClientEvent {
	return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Leave{Leave: &chatv1.Leave{Room: room}}}
}

// Typing is a typing notice for room.
func Typing(room string, active bool) *chatv1.ClientEvent {
	return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Typing{Typing: &chatv1.Typing{Room: room, Active: active}}}
}

// Send is a Send of body to room with client message id and sender seq
// (no send time: no delivery latency is measured for it).
func Send(room, id string, senderSeq uint64, body string) *chatv1.ClientEvent {
	return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
		Room: room, ClientMsgId: id, SenderSeq: senderSeq, Body: body}}}
}

// SendBuf is one reusable Send event, so that a send loop sends without
// allocating one per message: gRPC's SendMsg encodes the message before it
// returns, so the next Fill may overwrite it. It belongs to one send loop.
type SendBuf struct {
	// Session is the sender_session of every Send (a run id; may be "").
	Session string

	ev   chatv1.ClientEvent
	wrap chatv1.ClientEvent_Send
}

// Fill sets the buffer to a Send of body to room with client message id,
// sender seq and the client's send time (unix nanoseconds, the base of
// the delivery latency), and returns it.
func (b *SendBuf) Fill(room, id string, senderSeq uint64, body string, sentUnixNanos int64) *chatv1.ClientEvent {
	if b.wrap.Send == nil {
		b.wrap.Send = &chatv1.Send{}
		b.ev.Event = &b.wrap
	}
	*b.wrap.Send = chatv1.Send{Room: room, ClientMsgId: id, SenderSeq: senderSeq, Body: body,
		ClientSentUnixNanos: sentUnixNanos, SenderSession: b.Session}
	return &b.ev
}

// MsgID is the client message id of a sender's message number seq:
// prefix (the user, with a run id when runs share a server) "." seq.
func MsgID(prefix string, seq uint64) string {
	return prefix + "." + strconv.FormatUint(seq, 10)
}

// SenderSeqOf reads the sender seq back from an id made by MsgID: the
// number after its last dot; ok is false when there is none.
func SenderSeqOf(id string) (seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '.')
	if i < 0 {
		return 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	return seq, err == nil
}
