package chat

import (
	"context"
	"net"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"

	"github.com/bidikit/bidikit/internal/chattest"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/store"
)

// fakeShared is a SharedLog in memory whose feeds deliver only when told
// (flush): it stands for another instance's JetStream feed that lags.
type fakeShared struct {
	mu    sync.Mutex
	msgs  map[string][][]byte
	keys  map[string]uint64
	feeds []*fakeFeed
}

type fakeFeed struct {
	room    string
	next    uint64 // next seq to deliver
	fn      func(uint64, []byte)
	stopped bool
}

func newFakeShared() *fakeShared {
	return &fakeShared{msgs: map[string][][]byte{}, keys: map[string]uint64{}}
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
	f.mu.Lock()
	if seq, ok := f.keys[room+"/"+key]; ok {
		f.mu.Unlock()
		done(seq, true, nil)
		return
	}
	f.msgs[room] = append(f.msgs[room], append([]byte(nil), payload...))
	seq := uint64(len(f.msgs[room]))
	f.keys[room+"/"+key] = seq
	f.mu.Unlock()
	done(seq, false, nil)
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
})
