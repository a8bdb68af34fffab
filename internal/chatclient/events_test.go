package chatclient_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/internal/chatclient"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

var _ = Describe("client events", func() {
	It("builds Join (from the head or resuming), Leave, Typing and Send", func() {
		Expect(chatclient.Join("r", nil).GetJoin().ResumeAfter).To(BeNil())
		after := uint64(7)
		Expect(chatclient.Join("r", &after).GetJoin().GetResumeAfter()).To(BeEquivalentTo(7))
		Expect(chatclient.Leave("r").GetLeave().GetRoom()).To(Equal("r"))
		Expect(chatclient.Typing("r", true).GetTyping().GetActive()).To(BeTrue())
		s := chatclient.Send("r", "u.1", 1, "hi").GetSend()
		Expect([]any{s.GetRoom(), s.GetClientMsgId(), s.GetSenderSeq(), s.GetBody(), s.GetClientSentUnixNanos()}).
			To(Equal([]any{"r", "u.1", uint64(1), "hi", int64(0)}))
	})

	It("SendBuf fills one reused Send with the session, without allocating", func() {
		b := chatclient.SendBuf{Session: "run1"}
		first := b.Fill("r", "u.1", 1, "a", 10)
		wire, err := proto.Marshal(first)
		Expect(err).NotTo(HaveOccurred())
		second := b.Fill("q", "u.2", 2, "b", 20)
		Expect(second).To(BeIdenticalTo(first))
		Expect(second.GetSend().GetRoom()).To(Equal("q"))
		Expect(second.GetSend().GetSenderSession()).To(Equal("run1"))
		var back chatv1.ClientEvent
		Expect(proto.Unmarshal(wire, &back)).To(Succeed())
		Expect(back.GetSend().GetClientMsgId()).To(Equal("u.1"))
		Expect(back.GetSend().GetClientSentUnixNanos()).To(BeEquivalentTo(10))
		allocs := testing.AllocsPerRun(100, func() { b.Fill("r", "u.3", 3, "c", 30) })
		Expect(allocs).To(BeZero())
	})

	It("numbers client message ids and reads the sender seq back", func() {
		id := chatclient.MsgID("alice.run1", 42)
		Expect(id).To(Equal("alice.run1.42"))
		seq, ok := chatclient.SenderSeqOf(id)
		Expect(ok).To(BeTrue())
		Expect(seq).To(BeEquivalentTo(42))
		_, ok = chatclient.SenderSeqOf("nodot")
		Expect(ok).To(BeFalse())
		_, ok = chatclient.SenderSeqOf("a.b")
		Expect(ok).To(BeFalse())
	})
})

// recorder is a Handler that logs what it is told, by kind.
type recorder struct {
	kinds []string
	msgs  []*chatv1.Message
	ats   []time.Time
}

func (r *recorder) Joined(*chatv1.Joined) { r.kinds = append(r.kinds, "joined") }
func (r *recorder) Deliver(m *chatv1.Message, at time.Time) {
	r.kinds = append(r.kinds, "message")
	r.msgs, r.ats = append(r.msgs, m), append(r.ats, at)
}
func (r *recorder) Ack(*chatv1.Ack)             { r.kinds = append(r.kinds, "ack") }
func (r *recorder) Error(*chatv1.Error)         { r.kinds = append(r.kinds, "error") }
func (r *recorder) Presence(*chatv1.Presence)   { r.kinds = append(r.kinds, "presence") }
func (r *recorder) Typing(*chatv1.TypingNotice) { r.kinds = append(r.kinds, "typing") }
func (r *recorder) Left(*chatv1.Left)           { r.kinds = append(r.kinds, "left") }

// counter is a Handler that counts messages.
type counter struct {
	chatclient.Ignore
	n int
}

func (c *counter) Deliver(*chatv1.Message, time.Time) { c.n++ }

func msg(seq uint64) *chatv1.Message { return &chatv1.Message{Room: "r", Seq: seq} }
func batch(ms ...*chatv1.Message) *chatv1.ServerEvent {
	return &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Batch{Batch: &chatv1.MessageBatch{Messages: ms}}}
}

var _ = Describe("server events", func() {
	It("Dispatch tells each kind, a Batch as its messages in order with one time, and passes over presence, typing and Left", func() {
		r := &recorder{}
		evs := []*chatv1.ServerEvent{
			{Event: &chatv1.ServerEvent_Joined{Joined: &chatv1.Joined{Room: "r"}}},
			{Event: &chatv1.ServerEvent_Message{Message: msg(1)}},
			batch(msg(2), msg(3)),
			{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{}}},
			{Event: &chatv1.ServerEvent_Error{Error: &chatv1.Error{}}},
			{Event: &chatv1.ServerEvent_Presence{Presence: &chatv1.Presence{}}},
			{Event: &chatv1.ServerEvent_Typing{Typing: &chatv1.TypingNotice{}}},
			{Event: &chatv1.ServerEvent_Left{Left: &chatv1.Left{}}},
			{}, // no event set: ignored
		}
		var carried []bool
		for _, ev := range evs {
			carried = append(carried, chatclient.Dispatch(ev, r))
		}
		Expect(r.kinds).To(Equal([]string{"joined", "message", "message", "message", "ack", "error"}))
		Expect(carried).To(Equal([]bool{false, true, true, false, false, false, false, false, false}))
		Expect(r.msgs).To(Equal([]*chatv1.Message{evs[1].GetMessage(), evs[2].GetBatch().GetMessages()[0], evs[2].GetBatch().GetMessages()[1]}))
		Expect(r.ats[1]).To(Equal(r.ats[2]))
		chatclient.Dispatch(evs[0], chatclient.Ignore{})
	})

	It("Dispatch allocates nothing per message (the bench loop's receive path)", func() {
		var h counter
		b := batch(msg(1), msg(2), msg(3))
		one := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: msg(4)}}
		allocs := testing.AllocsPerRun(100, func() {
			chatclient.Dispatch(b, &h)
			chatclient.Dispatch(one, &h)
		})
		Expect(allocs).To(BeZero())
		Expect(h.n).To(BeNumerically(">=", 400))
	})

	It("Flatten keeps an event, and turns a Batch into one Message event each", func() {
		one := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{}}}
		Expect(chatclient.Flatten(one)).To(Equal([]*chatv1.ServerEvent{one}))
		b := batch(msg(4), msg(5))
		flat := chatclient.Flatten(b)
		Expect(flat).To(HaveLen(2))
		Expect(flat[0].GetMessage()).To(BeIdenticalTo(b.GetBatch().GetMessages()[0]))
		Expect(flat[1].GetMessage().GetSeq()).To(BeEquivalentTo(5))
		Expect(chatclient.Flatten(batch())).To(BeEmpty())
	})

	It("Latency measures live messages with a send time only", func() {
		at := time.Unix(100, 0)
		d, ok := chatclient.Latency(&chatv1.Message{ClientSentUnixNanos: at.Add(-3 * time.Millisecond).UnixNano()}, at)
		Expect(ok).To(BeTrue())
		Expect(d).To(Equal(3 * time.Millisecond))
		_, ok = chatclient.Latency(&chatv1.Message{ClientSentUnixNanos: 5, Replay: true}, at)
		Expect(ok).To(BeFalse())
		_, ok = chatclient.Latency(&chatv1.Message{}, at)
		Expect(ok).To(BeFalse())
	})
})
