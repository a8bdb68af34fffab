package chat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/internal/chattest"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/store"
)

// fakeShared is a SharedLog in memory whose feeds deliver only when told
// (flush): it stands for another instance's JetStream feed that lags. fail
// makes the next publishes of a key fail (not stored, as a publish that met
// no stream leader); pastWindow makes it answer resends as JetStream does
// after its Duplicates window (by the writer's order, then WriterKey).
type fakeShared struct {
	mu         sync.Mutex
	msgs       map[string][][]byte
	writers    map[string][]string // room -> writer of each seq ("" for Publish)
	keys       map[string]uint64
	feeds      []*fakeFeed
	fail       map[string]int // key -> publishes still to fail
	pastWindow bool
}

type fakeFeed struct {
	room    string
	next    uint64 // next seq to deliver
	fn      func(uint64, []byte)
	stopped bool
}

func newFakeShared() *fakeShared {
	return &fakeShared{msgs: map[string][][]byte{}, writers: map[string][]string{}, keys: map[string]uint64{}, fail: map[string]int{}}
}

func (f *fakeShared) Head(_ context.Context, room string) (store.Head, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := uint64(len(f.msgs[room]))
	if n == 0 {
		return store.Head{}, nil
	}
	return store.Head{Last: n, Oldest: 1}, nil
}

func (f *fakeShared) Follow(room string, after uint64, fn func(uint64, []byte), _ func(error)) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fd := &fakeFeed{room: room, next: after + 1, fn: fn}
	f.feeds = append(f.feeds, fd)
	return func() { f.mu.Lock(); fd.stopped = true; f.mu.Unlock() }, nil
}

func (f *fakeShared) Publish(room, key string, payload []byte, done func(uint64, bool, error)) {
	f.publish(room, "", key, payload, nil, done)
}

func (f *fakeShared) PublishAfter(room, writer, key string, payload []byte, writerLast uint64, done func(uint64, bool, error)) {
	f.publish(room, writer, key, payload, &writerLast, done)
}

func (f *fakeShared) publish(room, writer, key string, payload []byte, writerLast *uint64, done func(uint64, bool, error)) {
	f.mu.Lock()
	if f.fail[key] > 0 {
		f.fail[key]--
		f.mu.Unlock()
		done(0, false, errors.New("injected: no stream leader answered"))
		return
	}
	if seq, ok := f.keys[room+"/"+key]; ok && (!f.pastWindow || writerLast == nil) {
		f.mu.Unlock()
		done(seq, true, nil)
		return
	}
	if writerLast != nil {
		if last, _ := f.writerLast(room, writer); last != *writerLast {
			f.mu.Unlock()
			done(0, false, fmt.Errorf("writer's newest is at %d, not %d: %w", last, *writerLast, store.ErrConflict))
			return
		}
	}
	f.msgs[room] = append(f.msgs[room], append([]byte(nil), payload...))
	f.writers[room] = append(f.writers[room], writer)
	seq := uint64(len(f.msgs[room]))
	f.keys[room+"/"+key] = seq
	f.mu.Unlock()
	done(seq, false, nil)
}

// writerLast is the seq of writer's newest message in room (0: none).
// Caller holds f.mu.
func (f *fakeShared) writerLast(room, writer string) (uint64, []byte) {
	ws := f.writers[room]
	for i := len(ws) - 1; i >= 0; i-- {
		if ws[i] == writer {
			return uint64(i + 1), f.msgs[room][i]
		}
	}
	return 0, nil
}

func (f *fakeShared) WriterLast(_ context.Context, room, writer string) (uint64, []byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq, payload := f.writerLast(room, writer)
	return seq, payload, seq > 0, nil
}

func (f *fakeShared) WriterKey(_ context.Context, room, writer, key string, upTo uint64) (uint64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq, ok := f.keys[room+"/"+key]
	if !ok || seq > upTo || f.writers[room][seq-1] != writer {
		return 0, false, nil
	}
	return seq, true, nil
}

// publishAs stores a message of user (sender_session session) as another
// instance would.
func (f *fakeShared) publishAs(room, user, session, id string, sseq uint64) {
	raw, err := proto.Marshal(&chatv1.Message{Room: room, Sender: user, ClientMsgId: id, SenderSeq: sseq, Body: "elsewhere"})
	Expect(err).NotTo(HaveOccurred())
	f.mu.Lock()
	last, _ := f.writerLast(room, writerOf(user, session))
	f.mu.Unlock()
	f.PublishAfter(room, writerOf(user, session), user+"\x00"+id, raw, last, func(uint64, bool, error) {})
}

func (f *fakeShared) Range(_ context.Context, room string, from, to uint64, fn func(uint64, []byte) error) error {
	f.mu.Lock()
	msgs := f.msgs[room]
	f.mu.Unlock()
	for seq := max(from, 1); seq <= to && seq <= uint64(len(msgs)); seq++ {
		if err := fn(seq, msgs[seq-1]); err != nil {
			return err
		}
	}
	return nil
}

// flush delivers everything published so far to every running feed, in
// order, as the feeds' own goroutine would.
func (f *fakeShared) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fd := range f.feeds {
		msgs := f.msgs[fd.room]
		for !fd.stopped && fd.next <= uint64(len(msgs)) {
			fd.fn(fd.next, msgs[fd.next-1])
			fd.next++
		}
	}
}

func startShared(lg SharedLog) string {
	GinkgoHelper()
	svc, err := NewShared(testConfig(), lg, metrics.Discard(), nil, nil)
	Expect(err).NotTo(HaveOccurred())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	srv := grpc.NewServer(grpc.StreamInterceptor(auth.StreamInterceptor(auth.DevMode{})))
	svc.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	DeferCleanup(func() { srv.Stop(); _ = svc.Close() })
	return lis.Addr().String()
}

var _ = Describe("Shared mode (a SharedLog orders the rooms)", func() {
	It("acks with the log's seq, relays only what the feed delivers, and de-duplicates through the log", func(ctx SpecContext) {
		lg := newFakeShared()
		cc := chattest.Dial(GinkgoT(), startShared(lg))
		a := chattest.Connect(GinkgoT(), cc, "alice")
		a.Join("r")
		a.Send(chattest.SendEv("r", "m1", 1, "hi"))
		a.Send(chattest.SendEv("r", "m1", 1, "hi"))
		Eventually(ctx, func() []*chatv1.Ack { return a.Acks() }).Should(HaveLen(2))
		Expect(a.Acks()[0]).To(SatisfyAll(HaveField("Seq", BeEquivalentTo(1)), HaveField("Duplicate", BeFalse())))
		Expect(a.Acks()[1]).To(SatisfyAll(HaveField("Seq", BeEquivalentTo(1)), HaveField("Duplicate", BeTrue())))
		Consistently(func() []*chatv1.Message { return a.Messages("r") }).WithTimeout(100 * time.Millisecond).Should(BeEmpty())
		lg.flush()
		Eventually(ctx, func() []*chatv1.Message { return a.Messages("r") }).Should(HaveLen(1))
		Expect(a.Messages("r")[0]).To(SatisfyAll(HaveField("Seq", BeEquivalentTo(1)), HaveField("Sender", Equal("alice")), HaveField("Body", Equal("hi"))))
	}, SpecTimeout(20*time.Second))

	It("does not deliver again what a member resuming past this instance's lagging feed already saw", func(ctx SpecContext) {
		lg := newFakeShared()
		cc := chattest.Dial(GinkgoT(), startShared(lg))
		a := chattest.Connect(GinkgoT(), cc, "alice")
		a.Join("r") // starts this instance's feed at seq 0
		for i := range 5 {
			a.Send(chattest.SendEv("r", string(rune('a'+i)), uint64(i+1), "x"))
		}
		Eventually(ctx, func() []*chatv1.Ack { return a.Acks() }).Should(HaveLen(5))
		// bob saw up to seq 3 on another instance; this one has delivered
		// nothing yet.
		b := chattest.Connect(GinkgoT(), cc, "bob")
		j := b.JoinFrom("r", chattest.Ptr(uint64(3)))
		Expect(j.GetHeadSeq()).To(BeZero())
		Expect(j.GetReplayFrom()).To(BeZero())
		lg.flush()
		Eventually(ctx, func() []*chatv1.Message { return a.Messages("r") }).Should(HaveLen(5))
		Eventually(ctx, func() []*chatv1.Message { return b.Messages("r") }).Should(HaveLen(2))
		Expect(chattest.Gapless(b.Messages("r"), 4)).To(Succeed())
	}, SpecTimeout(20*time.Second))

	It("replays from the log on resume", func(ctx SpecContext) {
		lg := newFakeShared()
		cc := chattest.Dial(GinkgoT(), startShared(lg))
		a := chattest.Connect(GinkgoT(), cc, "alice")
		a.Join("r")
		for i := range 4 {
			a.Send(chattest.SendEv("r", string(rune('a'+i)), uint64(i+1), "x"))
		}
		Eventually(ctx, func() []*chatv1.Ack { return a.Acks() }).Should(HaveLen(4))
		lg.flush()
		b := chattest.Connect(GinkgoT(), cc, "bob")
		j := b.JoinFrom("r", chattest.Ptr(uint64(1)))
		Expect(j).To(SatisfyAll(HaveField("HeadSeq", BeEquivalentTo(4)), HaveField("ReplayFrom", BeEquivalentTo(2))))
		Eventually(ctx, func() []*chatv1.Message { return b.Messages("r") }).Should(HaveLen(3))
		Expect(chattest.Gapless(b.Messages("r"), 2)).To(Succeed())
		for _, m := range b.Messages("r") {
			Expect(m.GetReplay()).To(BeTrue())
		}
		_, err := NewShared(testConfig(), nil, metrics.Discard(), nil, nil)
		Expect(err).To(MatchError(ContainSubstring("nil shared log")))
	}, SpecTimeout(20*time.Second))

	It("keeps a sender's order when a publish fails: the stream's later Sends are refused with UNAVAILABLE until it resends the failed one, then all are stored in order", func(ctx SpecContext) {
		lg := newFakeShared()
		lg.fail["alice\x00m1"] = 1
		cc := chattest.Dial(GinkgoT(), startShared(lg))
		a := chattest.Connect(GinkgoT(), cc, "alice")
		a.Join("r")
		for i, id := range []string{"m1", "m2", "m3"} {
			a.Send(sessionSend("r", id, uint64(i+1), "s1"))
		}
		Eventually(ctx, func() []*chatv1.Error { return a.Errors() }).Should(HaveLen(3))
		for i, e := range a.Errors() {
			Expect(e).To(SatisfyAll(HaveField("Code", BeEquivalentTo(codes.Unavailable)), HaveField("ClientMsgId", Equal([]string{"m1", "m2", "m3"}[i]))))
		}
		Expect(a.Errors()[0].GetMessage()).To(ContainSubstring("injected"))
		Expect(a.Errors()[1].GetMessage()).To(ContainSubstring("resend from sender_seq 1"))
		Expect(a.Acks()).To(BeEmpty())
		for i, id := range []string{"m1", "m2", "m3"} {
			a.Send(sessionSend("r", id, uint64(i+1), "s1"))
		}
		Eventually(ctx, func() []*chatv1.Ack { return a.Acks() }).Should(HaveLen(3))
		for i, ack := range a.Acks() {
			Expect(ack).To(SatisfyAll(HaveField("ClientMsgId", Equal([]string{"m1", "m2", "m3"}[i])), HaveField("Seq", BeEquivalentTo(i+1)), HaveField("Duplicate", BeFalse())))
		}
		Expect(a.Errors()).To(HaveLen(3))
	}, SpecTimeout(20*time.Second))

	DescribeTable("never orders a sender_session's message after a later one stored by another instance: FAILED_PRECONDITION; a resend of a stored one is a duplicate",
		func(ctx SpecContext, pastWindow bool) {
			lg := newFakeShared()
			lg.pastWindow = pastWindow
			lg.publishAs("r", "alice", "s1", "m5", 5)
			lg.publishAs("r", "bob", "s9", "b1", 1)
			cc := chattest.Dial(GinkgoT(), startShared(lg))
			a := chattest.Connect(GinkgoT(), cc, "alice")
			a.Join("r")
			a.Send(sessionSend("r", "m3", 3, "s1"))
			Eventually(ctx, func() []*chatv1.Error { return a.Errors() }).Should(HaveLen(1))
			Expect(a.Errors()[0]).To(SatisfyAll(HaveField("Code", BeEquivalentTo(codes.FailedPrecondition)), HaveField("Field", Equal("send.sender_seq")),
				HaveField("ClientMsgId", Equal("m3")), HaveField("Message", ContainSubstring("sender_seq 5 is already stored in room \"r\" at seq 1"))))
			a.Send(sessionSend("r", "m5", 5, "s1"))
			a.Send(sessionSend("r", "m6", 6, "s1"))
			// another numbering of the same sender starts afresh
			a.Send(sessionSend("r", "n1", 1, "s2"))
			Eventually(ctx, func() []*chatv1.Ack { return a.Acks() }).Should(HaveLen(3))
			// n1 is another writer's (another chain): its ack may come first
			acks := map[string]*chatv1.Ack{}
			for _, ack := range a.Acks() {
				acks[ack.GetClientMsgId()] = ack
			}
			Expect(acks["m5"]).To(SatisfyAll(HaveField("Seq", BeEquivalentTo(1)), HaveField("Duplicate", BeTrue())))
			Expect(acks["m6"]).To(SatisfyAll(HaveField("Seq", BeNumerically(">", 2)), HaveField("Duplicate", BeFalse())))
			Expect(acks["n1"]).To(SatisfyAll(HaveField("Seq", BeNumerically(">", 2)), HaveField("Duplicate", BeFalse())))
			Expect(a.Errors()).To(HaveLen(1))
		},
		Entry("resend inside the de-duplication window", false, SpecTimeout(20*time.Second)),
		Entry("resend after it (found among the writer's messages)", true, SpecTimeout(20*time.Second)),
	)

	It("stores a Send after the message another instance stored meanwhile: the log refuses the stale condition and the chain reads the writer again", func(ctx SpecContext) {
		lg := newFakeShared()
		cc := chattest.Dial(GinkgoT(), startShared(lg))
		a := chattest.Connect(GinkgoT(), cc, "alice")
		a.Join("r")
		a.Send(sessionSend("r", "m1", 1, "s1"))
		Eventually(ctx, func() []*chatv1.Ack { return a.Acks() }).Should(HaveLen(1))
		lg.publishAs("r", "alice", "s1", "m2", 2)
		a.Send(sessionSend("r", "m3", 3, "s1"))
		Eventually(ctx, func() []*chatv1.Ack { return a.Acks() }).Should(HaveLen(2))
		Expect(a.Acks()[1]).To(SatisfyAll(HaveField("ClientMsgId", Equal("m3")), HaveField("Seq", BeEquivalentTo(3))))
		Expect(a.Errors()).To(BeEmpty())
	}, SpecTimeout(20*time.Second))

	It("keeps the order per stream only without a sender_session: a lower sender_seq is stored", func(ctx SpecContext) {
		lg := newFakeShared()
		cc := chattest.Dial(GinkgoT(), startShared(lg))
		a := chattest.Connect(GinkgoT(), cc, "alice")
		a.Join("r")
		a.Send(chattest.SendEv("r", "m2", 2, "x"))
		a.Send(chattest.SendEv("r", "m1", 1, "x"))
		Eventually(ctx, func() []*chatv1.Ack { return a.Acks() }).Should(HaveLen(2))
		Expect(a.Errors()).To(BeEmpty())
	}, SpecTimeout(20*time.Second))
})

// sessionSend is a Send with a sender_session.
func sessionSend(room, id string, senderSeq uint64, session string) *chatv1.ClientEvent {
	return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
		Room: room, ClientMsgId: id, SenderSeq: senderSeq, Body: "x", SenderSession: session}}}
}
