package chatclient_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/internal/chatclient"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// ids returns the client message ids of ps.
func ids(ps []*chatclient.Pending) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func pend(room string, seq uint64) *chatclient.Pending {
	return &chatclient.Pending{Room: room, ID: chatclient.MsgID("u", seq), SenderSeq: seq, Body: "b", At: time.Now()}
}

func joined(room string, head uint64) *chatv1.Joined {
	return &chatv1.Joined{Room: room, HeadSeq: head}
}

var _ = Describe("Session", func() {
	var (
		s     *chatclient.Session
		wakes chan struct{}
	)
	BeforeEach(func() {
		ch := make(chan struct{}, 1) // its own: a back-off timer may fire after the spec
		wakes = ch
		s = chatclient.NewSession([]string{"a", "b"}, 8, func() {
			select {
			case ch <- struct{}{}:
			default:
			}
		})
	})

	It("joins from the head first, then resumes from the last seen position (or a stale one)", func() {
		first := s.Start()
		Expect(first).To(HaveLen(2))
		Expect(first[0].GetJoin().GetRoom()).To(Equal("a"))
		Expect(first[0].GetJoin().ResumeAfter).To(BeNil())
		after, asked := s.Joined(joined("a", 5))
		Expect(asked).To(BeFalse())
		Expect(after).To(BeZero())
		s.Delivered(&chatv1.Message{Room: "a", Seq: 9})
		s.Delivered(&chatv1.Message{Room: "a", Seq: 7}) // older: the position stays
		Expect(s.Ended()).To(Equal([]string{"a"}))
		Expect(s.Ended()).To(BeEmpty())

		second := s.Start()
		Expect(second[0].GetJoin().GetResumeAfter()).To(BeEquivalentTo(9))
		Expect(second[1].GetJoin().ResumeAfter).To(BeNil()) // b was never joined
		after, asked = s.Joined(joined("a", 12))
		Expect([]any{after, asked}).To(Equal([]any{uint64(9), true}))

		s.Stale(4)
		Expect(s.Start()[0].GetJoin().GetResumeAfter()).To(BeEquivalentTo(5))
		Expect(s.Start()[0].GetJoin().GetResumeAfter()).To(BeEquivalentTo(9)) // once only
		s.Stale(0)
		Expect(s.Start()[0].GetJoin().GetResumeAfter()).To(BeZero())
	})

	It("holds sends until the room is joined, resends the oldest alone first, the rest after its answer", func() {
		s.Start()
		Expect(s.Queue(pend("a", 1))).To(BeEmpty())
		Expect(s.Ready("a")).To(BeFalse())
		s.Joined(joined("a", 0))
		Expect(wakes).To(Receive())
		joins, out := s.Due()
		Expect(joins).To(BeEmpty())
		Expect(ids(out)).To(Equal([]string{"u.1"})) // the probe
		Expect(s.Queue(pend("a", 2))).To(BeEmpty()) // behind the probe
		p, ok := s.Acked(&chatv1.Ack{ClientMsgId: "u.1"})
		Expect(ok).To(BeTrue())
		Expect(p.SenderSeq).To(BeEquivalentTo(1))
		Expect(wakes).To(Receive())
		_, out = s.Due()
		Expect(ids(out)).To(Equal([]string{"u.2"}))
		Expect(s.Ready("a")).To(BeTrue())
		Expect(ids(s.Queue(pend("a", 3)))).To(Equal([]string{"u.3"}))
		_, ok = s.Acked(&chatv1.Ack{ClientMsgId: "someone.else.1"})
		Expect(ok).To(BeFalse())

		// UNAVAILABLE: resend from the oldest unacknowledged after a back-off.
		s.Refused(&chatv1.Error{Code: uint32(codes.Unavailable), ClientMsgId: "u.3", Room: "a"})
		_, out = s.Due()
		Expect(out).To(BeEmpty())
		Eventually(wakes).WithTimeout(5 * time.Second).Should(Receive())
		Eventually(func() []string { _, out := s.Due(); return ids(out) }).
			WithTimeout(5 * time.Second).Should(Equal([]string{"u.2"}))
		// Refused for good: forgotten, the others go.
		s.Refused(&chatv1.Error{Code: uint32(codes.InvalidArgument), ClientMsgId: "u.2", Room: "a"})
		_, out = s.Due()
		Expect(ids(out)).To(Equal([]string{"u.3"}))
		_, ok = s.Acked(&chatv1.Ack{ClientMsgId: "u.2"})
		Expect(ok).To(BeFalse())

		// A new stream sends the unacknowledged again once joined.
		s.Start()
		Expect(s.Queue(pend("a", 4))).To(BeEmpty())
		s.Joined(joined("a", 3))
		_, out = s.Due()
		Expect(ids(out)).To(Equal([]string{"u.3"}))
		s.Acked(&chatv1.Ack{ClientMsgId: "u.3"})
		_, out = s.Due()
		Expect(ids(out)).To(Equal([]string{"u.4"}))
	})

	It("sends a Join refused for now again after a back-off; one refused for good lets the sends go", func() {
		s.Start()
		s.Refused(&chatv1.Error{Code: uint32(codes.Unavailable), Field: "join.room", Room: "a"})
		joins, _ := s.Due()
		Expect(joins).To(BeEmpty())
		Eventually(func() int { j, _ := s.Due(); return len(j) }).WithTimeout(5 * time.Second).Should(Equal(1))
		s.Refused(&chatv1.Error{Code: uint32(codes.PermissionDenied), Field: "join.room", Room: "a"})
		Expect(s.Ready("a")).To(BeTrue())
		Expect(ids(s.Queue(pend("a", 1)))).To(Equal([]string{"u.1"}))
		Expect(chatclient.IsJoinError(&chatv1.Error{Field: "join.room"})).To(BeFalse()) // no room
		Expect(chatclient.IsJoinError(&chatv1.Error{Field: "send.body", Room: "a"})).To(BeFalse())
	})

	It("sends past maxPending at once, untracked", func() {
		s = chatclient.NewSession([]string{"a"}, 1, func() {})
		s.Start()
		Expect(s.Queue(pend("a", 1))).To(BeEmpty())
		Expect(ids(s.Queue(pend("a", 2)))).To(Equal([]string{"u.2"}))
		_, ok := s.Acked(&chatv1.Ack{ClientMsgId: "u.2"})
		Expect(ok).To(BeFalse())
	})
})
