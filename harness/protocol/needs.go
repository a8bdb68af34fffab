package protocol

import (
	"fmt"
	"sort"
	"strings"
)

// What each check needs from a mapping. A check of a custom scenario runs
// only when every path it needs is provided; otherwise its verdict is not
// measurable, naming what is missing (NotMeasurable). The table follows
// what each checker reads from the events the custom driver emits
// (harness/engine/custom): a checker fed events without those fields would
// see nothing to judge, or worse, compare empty values and pass.
var checkNeeds = map[string][]Path{
	// One message per (room, seq): who sent it and which one it is.
	"total-order": {In(Delivery, FieldRoom), In(Delivery, FieldSeq), In(Delivery, FieldSender), In(Delivery, FieldClientMsgID)},
	// Holes from the join's head on: the head comes with the join.
	"no-gaps":        {In(Delivery, FieldRoom), In(Delivery, FieldSeq), In(Joined, FieldHeadSeq)},
	"no-duplicates":  {In(Delivery, FieldRoom), In(Delivery, FieldSeq)},
	"delivery-order": {In(Delivery, FieldRoom), In(Delivery, FieldSeq)},
	// Acked seqs owed to every member subscribed from its join's head on.
	"no-lost-acks": {In(Ack, FieldSeq), In(Ack, FieldClientMsgID), In(Delivery, FieldRoom), In(Delivery, FieldSeq), In(Joined, FieldHeadSeq)},
	"sender-fifo": {In(Delivery, FieldRoom), In(Delivery, FieldSeq), In(Delivery, FieldSender), In(Delivery, FieldSenderSeq),
		In(Delivery, FieldClientMsgID)},
	"realtime-order": {In(Ack, FieldSeq), In(Ack, FieldClientMsgID)},
	"resume-complete": {Out(OutResume), In(Joined, FieldHeadSeq), In(Joined, FieldReplayFrom), In(Joined, FieldResumeComplete),
		In(Delivery, FieldRoom), In(Delivery, FieldSeq)},
	// Honest-to-honest latency needs the author; "not starved" counts acks.
	"fairness": {In(Delivery, FieldSender), Rule(Ack), In(Ack, FieldClientMsgID)},
}

// notForCustom are checks about the bidikit collab and game protocols,
// which no chat-like mapping describes.
var notForCustom = map[string]string{
	"convergence":     "convergence judges collaborative documents (service: collab); a protocol mapping describes rooms of messages",
	"game-invariants": "game-invariants judges game matches (service: game); a protocol mapping describes rooms of messages",
}

// Mapped says whether the spec maps p, as Mapping.Mapped would once the
// spec compiles: an outgoing message, an incoming kind, or a field a rule
// reads.
func (s *Spec) Mapped(p Path) bool {
	for _, o := range s.Outgoing {
		if Out(o.Name) == p {
			return true
		}
	}
	for _, r := range s.Incoming {
		if Rule(r.Kind) == p {
			return true
		}
		for _, f := range r.Fields {
			if In(r.Kind, f.Field) == p {
				return true
			}
		}
	}
	return false
}

// Provides says whether a run of the spec fills p: the spec maps it, or the
// custom driver knows it without reading it from a message:
//   - with echo: true, a delivery's room and sender are the client's own,
//     and its client message id is the one of the send it echoes (matched
//     by client_msg_id or sender_seq, whichever the delivery reads); its
//     seq counts the client's own messages, so a stream's first expected
//     seq is the one after the last message sent before it opened;
//   - an ack that reads a client_msg_id belongs to the room that message
//     was sent to.
func (s *Spec) Provides(p Path) bool {
	if s.Mapped(p) {
		return true
	}
	switch p {
	case In(Delivery, FieldRoom), In(Delivery, FieldSender):
		return s.Echo && s.Mapped(Rule(Delivery))
	case In(Delivery, FieldClientMsgID):
		return s.Echo && s.Mapped(In(Delivery, FieldSenderSeq))
	case In(Joined, FieldHeadSeq):
		// An echo's stream answers from the client's next message on.
		return s.Echo && s.Mapped(In(Delivery, FieldSeq))
	case In(Ack, FieldRoom):
		return s.Mapped(In(Ack, FieldClientMsgID))
	}
	return false
}

// NotMeasurable is why check cannot judge a run of the spec, naming the
// paths it needs that the spec does not provide
// ("protocol.incoming.delivery.seq is not mapped"); "" when it can (or
// when it needs nothing from the mapping: leaks, status-codes, ...).
func (s *Spec) NotMeasurable(check string) string {
	if why, ok := notForCustom[check]; ok {
		return why
	}
	var missing []Path
	for _, p := range checkNeeds[check] {
		if !s.Provides(p) {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 && s.Echo {
		return s.echoBlind(check)
	}
	return MissingReason(missing)
}

// echoBlind is why check, though fed every field it needs, cannot judge an
// echo ("" when it can): each stream is a room of its own whose only
// observer is its client, and a seq read by the very expression that reads
// the sender's seq cannot disagree with the sender's order.
func (s *Spec) echoBlind(check string) string {
	switch check {
	case "total-order":
		if !s.Mapped(Rule(Ack)) {
			return "with echo: true each stream is a room of its own, observed by its client only, and no ack is mapped: no two observers can disagree about a seq"
		}
	case "sender-fifo":
		seq, sseq := s.fieldExpr(Delivery, FieldSeq), s.fieldExpr(Delivery, FieldSenderSeq)
		if seq != nil && sseq != nil && strings.TrimSpace(seq.Value) == strings.TrimSpace(sseq.Value) {
			return fmt.Sprintf("%s and %s are the same expression (%s): with echo: true a sender's order cannot disagree with itself",
				seq.Path, sseq.Path, strings.TrimSpace(seq.Value))
		}
	}
	return ""
}

// fieldExpr is the expression the first rule of kind reads field with (nil:
// none does).
func (s *Spec) fieldExpr(kind Kind, field Field) *Text {
	for _, r := range s.Incoming {
		if r.Kind != kind {
			continue
		}
		for i := range r.Fields {
			if r.Fields[i].Field == field {
				return &r.Fields[i].Expr
			}
		}
	}
	return nil
}

// CheckNeeds lists the paths check needs from a mapping (none for a check
// that reads nothing from it), for documentation and tests.
func CheckNeeds(check string) []Path {
	return append([]Path(nil), checkNeeds[check]...)
}

// ChecksWithNeeds lists the checks CheckNeeds knows, sorted.
func ChecksWithNeeds() []string {
	out := make([]string, 0, len(checkNeeds))
	for c := range checkNeeds {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// FromFiles says whether the spec's descriptors come from files (a
// protoset or .proto sources), so that it compiles without a server.
func (s *Spec) FromFiles() bool {
	return s.Descriptors.Protoset.Value != "" || len(s.Descriptors.ProtoFiles) > 0
}
