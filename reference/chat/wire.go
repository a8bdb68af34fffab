package chat

import (
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"google.golang.org/protobuf/encoding/protowire"
)

// item is one entry of a session's send queue. Exactly one of raw, ev and job
// is set. Items are values: pushing one allocates nothing beyond the queue's
// amortised slice growth.
type item struct {
	// raw is an encoded chatv1.Message, shared (read-only) by every member
	// the message is broadcast to: a message is encoded once per broadcast.
	raw []byte
	// room and seq describe raw.
	room string
	seq  uint64
	// ev is a control event (Joined, Ack, Presence, TypingNotice, Error,
	// Left). Presence and typing events are shared by their receivers and
	// never modified after being queued.
	ev *chatv1.ServerEvent
	// job asks the writer to replay a resuming membership's history.
	job *replayJob
}

// Queue sizes of non-message items, for the byte bound.
const (
	controlItemBytes = 96
	rawItemOverhead  = 16
)

// Wire tags used to build ServerEvent bytes around pre-encoded Messages.
const (
	tagEventMessage  = byte(2<<3 | protowire.BytesType) // ServerEvent.message
	tagEventBatch    = byte(8<<3 | protowire.BytesType) // ServerEvent.batch
	tagBatchMessages = byte(1<<3 | protowire.BytesType) // MessageBatch.messages
	tagMessageReplay = byte(9<<3 | protowire.VarintType)
)

// replaySuffix appended to an encoded Message sets Message.replay = true:
// protobuf accepts fields in any order, so the stored encoding is reused.
var replaySuffix = []byte{tagMessageReplay, 1}

// maxEventBytes bounds one MessageBatch event, well below the 4 MiB clients
// accept by default.
const maxEventBytes = 1 << 20

// encodeMessages returns the bytes of one ServerEvent carrying msgs: a single
// Message event for one, a MessageBatch event for several. With replay set,
// every message gets replay = true.
func encodeMessages(msgs [][]byte, replay bool) []byte {
	extra := 0
	if replay {
		extra = len(replaySuffix)
	}
	if len(msgs) == 1 {
		n := len(msgs[0]) + extra
		b := make([]byte, 0, 1+protowire.SizeVarint(uint64(n))+n)
		b = append(b, tagEventMessage)
		b = protowire.AppendVarint(b, uint64(n))
		b = append(b, msgs[0]...)
		if replay {
			b = append(b, replaySuffix...)
		}
		return b
	}
	inner := 0
	for _, m := range msgs {
		inner += 1 + protowire.SizeBytes(len(m)+extra)
	}
	b := make([]byte, 0, 1+protowire.SizeBytes(inner))
	b = append(b, tagEventBatch)
	b = protowire.AppendVarint(b, uint64(inner))
	for _, m := range msgs {
		b = append(b, tagBatchMessages)
		b = protowire.AppendVarint(b, uint64(len(m)+extra))
		b = append(b, m...)
		if replay {
			b = append(b, replaySuffix...)
		}
	}
	return b
}

// rawEvent wraps encoded ServerEvent fields in a ServerEvent whose marshalled
// form is exactly b (carried as unknown fields, which protobuf emits
// verbatim), so the gRPC codec sends b without re-encoding the messages.
func rawEvent(b []byte) *chatv1.ServerEvent {
	ev := &chatv1.ServerEvent{}
	ev.ProtoReflect().SetUnknown(b)
	return ev
}
