package chattest

import (
	"fmt"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// Gapless reports the first message whose seq is not from, from+1, ... in
// turn (a gap or a duplicate), or nil.
func Gapless(msgs []*chatv1.Message, from uint64) error {
	for i, m := range msgs {
		if want := from + uint64(i); m.GetSeq() != want {
			return fmt.Errorf("message %d of room %s has seq %d, want %d (gap or duplicate)", i, m.GetRoom(), m.GetSeq(), want)
		}
	}
	return nil
}

// Same reports the first position where got differs from ref in seq,
// sender or client_msg_id (ref may be longer: got is a prefix), or nil.
func Same(ref, got []*chatv1.Message) error {
	if len(got) > len(ref) {
		return fmt.Errorf("%d messages, reference has %d", len(got), len(ref))
	}
	for i := range got {
		a, b := ref[i], got[i]
		if a.GetSeq() != b.GetSeq() || a.GetSender() != b.GetSender() || a.GetClientMsgId() != b.GetClientMsgId() {
			return fmt.Errorf("position %d: reference has seq %d %s/%s, got seq %d %s/%s", i,
				a.GetSeq(), a.GetSender(), a.GetClientMsgId(), b.GetSeq(), b.GetSender(), b.GetClientMsgId())
		}
	}
	return nil
}

// SenderFIFO reports a sender whose sender_seq does not go up, or nil.
func SenderFIFO(msgs []*chatv1.Message) error {
	last := map[string]uint64{}
	for _, m := range msgs {
		if m.GetSenderSeq() <= last[m.GetSender()] {
			return fmt.Errorf("sender %s: sender_seq %d at room seq %d after %d", m.GetSender(), m.GetSenderSeq(), m.GetSeq(), last[m.GetSender()])
		}
		last[m.GetSender()] = m.GetSenderSeq()
	}
	return nil
}

// Ptr returns a pointer to a copy of v (a resume position).
func Ptr[T any](v T) *T { return &v }
