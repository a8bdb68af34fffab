package chatclient

import (
	"time"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// Handler is told what one ServerEvent means (Dispatch). Embed Ignore for
// the kinds a handler does not care about. Presence, typing notices and
// Left change nothing for a client's sends, positions or measures; a log
// that keeps them reads the raw events (Flatten).
type Handler interface {
	// Joined answers a Join (head position, resume completeness).
	Joined(j *chatv1.Joined)
	// Deliver is one room message; at is when the event carrying it was
	// dispatched (one time for every message of a Batch).
	Deliver(m *chatv1.Message, at time.Time)
	// Ack says a Send was stored at a room seq (or was a duplicate).
	Ack(a *chatv1.Ack)
	// Error is a recoverable problem; the stream stays open.
	Error(e *chatv1.Error)
}

// Ignore is a Handler that does nothing with any event.
type Ignore struct{}

func (Ignore) Joined(*chatv1.Joined)              {}
func (Ignore) Deliver(*chatv1.Message, time.Time) {}
func (Ignore) Ack(*chatv1.Ack)                    {}
func (Ignore) Error(*chatv1.Error)                {}

// Dispatch tells h what ev means. A Batch is its messages one by one, in
// order, exactly as if each had come as a Message (chat.proto); Presence,
// TypingNotice, Left and kinds this client does not know are passed over.
// It reports whether ev carried room messages.
func Dispatch(ev *chatv1.ServerEvent, h Handler) (messages bool) {
	switch e := ev.GetEvent().(type) {
	case *chatv1.ServerEvent_Message:
		h.Deliver(e.Message, time.Now())
		return true
	case *chatv1.ServerEvent_Batch:
		at := time.Now()
		for _, m := range e.Batch.GetMessages() {
			h.Deliver(m, at)
		}
		return true
	case *chatv1.ServerEvent_Joined:
		h.Joined(e.Joined)
	case *chatv1.ServerEvent_Ack:
		h.Ack(e.Ack)
	case *chatv1.ServerEvent_Error:
		h.Error(e.Error)
	}
	return false
}

// Flatten returns ev as a log would keep it: a Batch as one Message event
// per message, in order; any other event as itself.
func Flatten(ev *chatv1.ServerEvent) []*chatv1.ServerEvent {
	b := ev.GetBatch()
	if b == nil {
		return []*chatv1.ServerEvent{ev}
	}
	out := make([]*chatv1.ServerEvent, len(b.GetMessages()))
	for i, m := range b.GetMessages() {
		out[i] = &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: m}}
	}
	return out
}

// Latency is m's send-to-delivery time at at, from the sender's
// client_sent_unix_nanos; ok is false for a replayed message (its time
// measures the member's absence, not the server) and for one sent without
// a send time.
func Latency(m *chatv1.Message, at time.Time) (d time.Duration, ok bool) {
	if m.GetReplay() || m.GetClientSentUnixNanos() <= 0 {
		return 0, false
	}
	return time.Duration(at.UnixNano() - m.GetClientSentUnixNanos()), true
}
