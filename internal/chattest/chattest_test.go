package chattest_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/internal/chattest"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference"
)

func msg(seq uint64, sender, id string, senderSeq uint64) *chatv1.Message {
	return &chatv1.Message{Room: "r", Seq: seq, Sender: sender, ClientMsgId: id, SenderSeq: senderSeq}
}

// fatalTB hands every Fatalf's message to failed and ends the calling
// goroutine there, as testing's Fatalf does; Cleanup defers to the spec.
type fatalTB struct{ failed chan string }

func (f *fatalTB) Helper()           {}
func (f *fatalTB) Cleanup(fn func()) { DeferCleanup(fn) }
func (f *fatalTB) Fatalf(s string, a ...any) {
	f.failed <- fmt.Sprintf(s, a...)
	runtime.Goexit()
}

var _ = Describe("order checks", func() {
	DescribeTable("Gapless",
		func(msgs []*chatv1.Message, from uint64, want string) {
			err := chattest.Gapless(msgs, from)
			if want == "" {
				Expect(err).NotTo(HaveOccurred())
				return
			}
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("none", nil, uint64(1), ""),
		Entry("1..3", []*chatv1.Message{msg(1, "a", "x", 1), msg(2, "a", "y", 2), msg(3, "b", "z", 1)}, uint64(1), ""),
		Entry("from 5", []*chatv1.Message{msg(5, "a", "x", 1), msg(6, "a", "y", 2)}, uint64(5), ""),
		Entry("a gap", []*chatv1.Message{msg(1, "a", "x", 1), msg(3, "a", "y", 2)}, uint64(1), "message 1 of room r has seq 3, want 2"),
		Entry("a duplicate", []*chatv1.Message{msg(1, "a", "x", 1), msg(1, "a", "x", 1)}, uint64(1), "has seq 1, want 2"),
		Entry("a late start", []*chatv1.Message{msg(2, "a", "x", 1)}, uint64(1), "want 1"),
	)

	It("Same accepts a prefix and names the first difference", func() {
		ref := []*chatv1.Message{msg(1, "a", "x", 1), msg(2, "b", "y", 1), msg(3, "a", "z", 2)}
		Expect(chattest.Same(ref, ref[:2])).To(Succeed())
		Expect(chattest.Same(ref, nil)).To(Succeed())
		Expect(chattest.Same(ref[:1], ref)).To(MatchError("3 messages, reference has 1"))
		Expect(chattest.Same(ref, []*chatv1.Message{msg(1, "a", "x", 1), msg(2, "a", "y", 1)})).To(MatchError(ContainSubstring("position 1")))
		Expect(chattest.Same(ref, []*chatv1.Message{msg(1, "a", "q", 1)})).To(MatchError(ContainSubstring("position 0")))
		Expect(chattest.Same(ref, []*chatv1.Message{msg(2, "a", "x", 1)})).To(MatchError(ContainSubstring("position 0")))
	})

	It("SenderFIFO names a sender whose sender_seq does not go up", func() {
		Expect(chattest.SenderFIFO([]*chatv1.Message{msg(1, "a", "x", 1), msg(2, "b", "y", 1), msg(3, "a", "z", 5)})).To(Succeed())
		Expect(chattest.SenderFIFO([]*chatv1.Message{msg(1, "a", "x", 2), msg(2, "a", "y", 1)})).To(MatchError(ContainSubstring("sender a: sender_seq 1 at room seq 2 after 2")))
		Expect(chattest.SenderFIFO([]*chatv1.Message{msg(1, "a", "x", 1), msg(2, "a", "x", 1)})).To(MatchError(ContainSubstring("sender a")))
	})
})

var _ = Describe("Client", func() {
	var addr string
	BeforeEach(func(ctx SpecContext) {
		sctx, cancel := context.WithCancel(context.Background())
		srv, err := reference.StartDefault(sctx, slog.New(slog.DiscardHandler))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { cancel(); _ = srv.Wait() })
		addr = srv.Addr()
	})

	It("joins, sends, logs acks and messages (batches flattened) and ends the interop way", func(ctx SpecContext) {
		cc := chattest.Dial(GinkgoT(), addr)
		a, b := chattest.Connect(GinkgoT(), cc, "alice"), chattest.Connect(GinkgoT(), cc, "bob")
		Expect(a.Join("lobby").GetRoom()).To(Equal("lobby"))
		j := b.Join("lobby")
		Expect(j.GetMembers()).To(ConsistOf("alice", "bob"))
		Expect(b.Join("side").GetRoom()).To(Equal("side"))
		Expect(b.JoinedIn("lobby")).To(HaveLen(1))
		Expect(b.Joined()).To(HaveLen(2))
		for k := 1; k <= 30; k++ {
			Expect(a.Say("lobby", fmt.Sprint(k), uint64(k))).To(Succeed())
		}
		a.Send(chattest.TypingEv("lobby", true))
		Eventually(ctx, func() int { return len(b.Messages("lobby")) }).Should(Equal(30))
		Eventually(ctx, func() int { return len(a.Acks()) }).Should(Equal(30))
		Expect(chattest.Gapless(b.Messages("lobby"), 1)).To(Succeed())
		Expect(chattest.SenderFIFO(b.Messages("lobby"))).To(Succeed())
		Expect(chattest.Same(a.Messages("lobby"), b.Messages("lobby"))).To(Succeed())
		Expect(b.Messages("lobby")[0].GetBody()).To(Equal("alice says 1"))
		Expect(b.Messages("side")).To(BeEmpty())
		Eventually(ctx, b.Typings).Should(HaveLen(1))
		Expect(a.Presences()).To(ContainElement(HaveField("User", "bob")))
		Expect(a.Errors()).To(BeEmpty())

		b.Send(chattest.JoinEv("lobby")) // joined twice: an Error event, the stream stays
		Eventually(ctx, b.Errors).Should(HaveLen(1))
		Expect(b.Ended()).To(BeFalse())
		Expect(a.CloseAndWait()).To(Succeed())
		Expect(a.Ended()).To(BeTrue())
		Expect(b.CloseAndWait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("resumes with JoinFrom, and reports a cancelled stream's status", func(ctx SpecContext) {
		cc := chattest.Dial(GinkgoT(), addr)
		a := chattest.Connect(GinkgoT(), cc, "alice")
		a.Join("r")
		for k := 1; k <= 5; k++ {
			a.Send(chattest.SendEv("r", fmt.Sprint(k), uint64(k), "x"))
		}
		Eventually(ctx, func() int { return len(a.Acks()) }).Should(Equal(5))
		late := chattest.Connect(GinkgoT(), cc, "bob")
		j := late.JoinFrom("r", chattest.Ptr(uint64(2)))
		Expect(j.GetReplayFrom()).To(BeEquivalentTo(3))
		Eventually(ctx, func() int { return len(late.Messages("r")) }).Should(Equal(3))
		Expect(chattest.Gapless(late.Messages("r"), 3)).To(Succeed())
		late.Cancel()
		Eventually(ctx, late.Done()).Should(BeClosed())
		Expect(status.Code(late.Err())).To(Equal(codes.Canceled))
	}, SpecTimeout(30*time.Second))

	It("Open does not read until StartReading, and the clean-up drains it", func(ctx SpecContext) {
		cc := chattest.Dial(GinkgoT(), addr)
		c := chattest.Open(GinkgoT(), cc, "carol")
		c.Send(chattest.JoinEv("r"))
		Consistently(c.Events).WithTimeout(100 * time.Millisecond).Should(BeEmpty())
		c.StartReading()
		Eventually(ctx, c.Joined).Should(HaveLen(1))
	}, SpecTimeout(30*time.Second))

	It("fails its TB when Join is never answered with a Joined", func(ctx SpecContext) {
		t := &fatalTB{failed: make(chan string, 1)}
		c := chattest.Connect(t, chattest.Dial(GinkgoT(), addr), "dave")
		c.Timeout = 300 * time.Millisecond
		returned := make(chan struct{})
		go func() {
			c.Join("a b") // refused with an Error event: no Joined comes
			close(returned)
		}()
		Eventually(ctx, t.failed).Should(Receive(ContainSubstring("dave: no Joined for a b within 300ms")))
		Expect(returned).NotTo(BeClosed())
		Expect(c.Errors()).To(HaveLen(1))
		Expect(c.CloseAndWait()).To(Succeed())
	}, SpecTimeout(30*time.Second))
})
