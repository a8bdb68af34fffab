package collab_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/internal/collab/ot"
	"github.com/bidikit/bidikit/reference/collab"
	"github.com/bidikit/bidikit/reference/store"
)

// heldStore is a memory store whose writer has not committed yet: each
// Append waits in held until commit releases it (then it is stored and its
// callback runs) or fails it (its callback gets the error, nothing stored).
type heldStore struct {
	*store.Memory
	mu   sync.Mutex
	held []heldAppend
}

type heldAppend struct {
	rec  store.Record
	done func(error)
}

func (h *heldStore) Append(rec store.Record, done func(error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = append(h.held, heldAppend{rec, done})
}

// commit stores the oldest n held appends, in order; failing the first of
// them with err when err is set.
func (h *heldStore) commit(n int, err error) {
	GinkgoHelper()
	h.mu.Lock()
	Expect(len(h.held)).To(BeNumerically(">=", n), "appends waiting in the store")
	batch := h.held[:n]
	h.held = h.held[n:]
	h.mu.Unlock()
	for i, a := range batch {
		if i == 0 && err != nil {
			a.done(err)
			continue
		}
		h.Memory.Append(a.rec, a.done)
	}
}

// outcome is one Append callback.
type outcome struct {
	Seq uint64
	Dup bool
	Err error
}

// appendTo appends and returns a channel with its outcome.
func appendTo(lg collab.SharedLog, doc, key, payload string, expect uint64) <-chan outcome {
	ch := make(chan outcome, 1)
	lg.Append(doc, key, []byte(payload), expect, func(seq uint64, dup bool, err error) { ch <- outcome{seq, dup, err} })
	return ch
}

// got waits for an outcome.
func got(ctx context.Context, ch <-chan outcome) outcome {
	GinkgoHelper()
	select {
	case o := <-ch:
		return o
	case <-ctx.Done():
		Fail("no Append outcome before the spec's deadline")
		return outcome{}
	}
}

// logEntries reads a document's entries back as "seq:payload".
func logEntries(ctx context.Context, lg collab.SharedLog, doc string) []string {
	GinkgoHelper()
	h, err := lg.Head(ctx, doc)
	Expect(err).NotTo(HaveOccurred())
	var out []string
	Expect(lg.Range(ctx, doc, 1, h.Last, func(seq uint64, payload []byte) error {
		out = append(out, fmt.Sprintf("%d:%s", seq, payload))
		return nil
	})).To(Succeed())
	return out
}

// feedLog collects what a Follow delivers.
type feedLog struct {
	mu  sync.Mutex
	got []string
}

func (f *feedLog) add(seq uint64, payload []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, fmt.Sprintf("%d:%s", seq, payload))
}

func (f *feedLog) entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func follow(lg collab.SharedLog, doc string, after uint64) *feedLog {
	GinkgoHelper()
	f := &feedLog{}
	stop, err := lg.Follow(doc, after, f.add, func(err error) { GinkgoWriter.Println("feed:", err) })
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)
	return f
}

func localLog(st store.Store) collab.SharedLog {
	lg, closeLog := collab.NewLocalLog(st)
	DeferCleanup(closeLog)
	return lg
}

var _ = Describe("Local document log (New's store behind the SharedLog interface)", func() {
	It("numbers appends after the store's head, keeps several waiting for commit, and refuses one expecting an older end (store.ErrConflict) without storing it", func(ctx SpecContext) {
		st := &heldStore{Memory: store.NewMemory(0)}
		lg := localLog(st)
		first := appendTo(lg, "d", "k1", "a", 0)
		second := appendTo(lg, "d", "k2", "b", 1) // pipelined behind the first
		Expect(got(ctx, appendTo(lg, "d", "k3", "x", 1))).To(SatisfyAll(
			HaveField("Err", MatchError(store.ErrConflict)), HaveField("Seq", uint64(0))),
			"the log already ends at 2 (accepted, not committed)")
		Consistently(first).WithTimeout(50*time.Millisecond).ShouldNot(Receive(), "no outcome before the store commits")
		st.commit(2, nil)
		Expect(got(ctx, first)).To(Equal(outcome{Seq: 1}))
		Expect(got(ctx, second)).To(Equal(outcome{Seq: 2}))

		By("a grown log refuses an append expecting version 1")
		Expect(got(ctx, appendTo(lg, "d", "k3", "x", 1)).Err).To(MatchError(store.ErrConflict))
		Expect(logEntries(ctx, lg, "d")).To(Equal([]string{"1:a", "2:b"}))

		By("a new log over the same store (a restart) goes on after the store's head")
		again := localLog(st)
		Expect(got(ctx, appendTo(again, "d", "k3", "c", 0)).Err).To(MatchError(store.ErrConflict))
		third := appendTo(again, "d", "k3", "c", 2)
		st.commit(1, nil)
		Expect(got(ctx, third)).To(Equal(outcome{Seq: 3}))
		Expect(logEntries(ctx, again, "d")).To(Equal([]string{"1:a", "2:b", "3:c"}))
	}, SpecTimeout(20*time.Second))

	It("answers a resend as a duplicate of the first copy, committed or still waiting, wherever the log ends; older keys are Lookup's", func(ctx SpecContext) {
		st := &heldStore{Memory: store.NewMemory(0)}
		lg := localLog(st)
		follow(lg, "d", 0) // as a loaded document does: the log keeps its recent keys while followed
		first := appendTo(lg, "d", "k1", "a", 0)
		Expect(got(ctx, appendTo(lg, "d", "k1", "a", 1))).To(Equal(outcome{Seq: 1, Dup: true}), "waiting in the store")
		st.commit(1, nil)
		Expect(got(ctx, first)).To(Equal(outcome{Seq: 1}))
		second := appendTo(lg, "d", "k2", "b", 1)
		st.commit(1, nil)
		Expect(got(ctx, second)).To(Equal(outcome{Seq: 2}))
		Expect(got(ctx, appendTo(lg, "d", "k1", "a", 2))).To(Equal(outcome{Seq: 1, Dup: true}), "committed")
		Expect(got(ctx, appendTo(lg, "d", "k1", "a", 0))).To(Equal(outcome{Seq: 1, Dup: true}), "expecting an older end")
		seq, found, err := lg.Lookup(ctx, "d", "k2")
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeTrue())
		Expect(seq).To(Equal(uint64(2)))
		Expect(logEntries(ctx, lg, "d")).To(Equal([]string{"1:a", "2:b"}), "nothing stored twice")

		By("after a restart the store still knows the key")
		seq, found, err = localLog(st).Lookup(ctx, "d", "k1")
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeTrue())
		Expect(seq).To(Equal(uint64(1)))
	}, SpecTimeout(20*time.Second))

	It("delivers to Follow only committed entries, in order, after the version asked", func(ctx SpecContext) {
		st := &heldStore{Memory: store.NewMemory(0)}
		lg := localLog(st)
		feed := follow(lg, "d", 0)
		for i, p := range []string{"a", "b", "c"} {
			appendTo(lg, "d", "k"+p, p, uint64(i))
		}
		Consistently(feed.entries).WithTimeout(100*time.Millisecond).Should(BeEmpty(), "accepted, not committed")
		st.commit(1, nil)
		Eventually(feed.entries).WithContext(ctx).Should(Equal([]string{"1:a"}))
		Consistently(feed.entries).WithTimeout(100*time.Millisecond).Should(Equal([]string{"1:a"}), "2 and 3 are not committed")
		st.commit(2, nil)
		Eventually(feed.entries).WithContext(ctx).Should(Equal([]string{"1:a", "2:b", "3:c"}))

		By("a feed started later reads what was committed before it from the store")
		late := follow(lg, "d", 1)
		Eventually(late.entries).WithContext(ctx).Should(Equal([]string{"2:b", "3:c"}))
		next := appendTo(lg, "d", "kd", "d", 3)
		st.commit(1, nil)
		Expect(got(ctx, next)).To(Equal(outcome{Seq: 4}))
		Eventually(late.entries).WithContext(ctx).Should(Equal([]string{"2:b", "3:c", "4:d"}))
		Eventually(feed.entries).WithContext(ctx).Should(HaveLen(4))
	}, SpecTimeout(20*time.Second))

	It("fails the appends behind a failed commit and delivers none of them", func(ctx SpecContext) {
		st := &heldStore{Memory: store.NewMemory(0)}
		lg := localLog(st)
		feed := follow(lg, "d", 0)
		first := appendTo(lg, "d", "k1", "a", 0)
		second := appendTo(lg, "d", "k2", "b", 1)
		st.commit(2, errors.New("disk full"))
		Expect(got(ctx, first).Err).To(MatchError(ContainSubstring("storing version 1 failed: disk full")))
		Expect(got(ctx, second).Err).To(MatchError(ContainSubstring("storing version 1 failed")), "stored behind a lost entry: not acknowledged")
		Expect(got(ctx, appendTo(lg, "d", "k3", "c", 2)).Err).To(MatchError(ContainSubstring("disk full")), "while the feed is on")
		Consistently(feed.entries).WithTimeout(100 * time.Millisecond).Should(BeEmpty())
	}, SpecTimeout(20*time.Second))
})

var _ = Describe("Documents whose log feed lags behind their appends", func() {
	It("acks an op once the log stored it, and gives an editor opening before the feed delivers it that version", func(ctx SpecContext) {
		lg, closeLog := collab.NewLocalLog(store.NewMemory(0))
		DeferCleanup(closeLog)
		gated := &gatedLog{SharedLog: lg}
		srv := startShared(testConfig(), gated)
		cc := dial(srv.addr)
		a := openStream(ctx, cc, "ann")
		a.open("d", "ca", nil)
		Expect(a.recv().GetOpened().GetVersion()).To(BeZero())

		By("the feed is held back: the ack comes from the store's callback")
		gated.hold()
		a.submit("d", "ca", 1, 0, must(ot.Splice(0, 0, 0, "hello")))
		Expect(a.recv().GetAck().GetVersion()).To(Equal(uint64(1)))
		b := openStream(ctx, cc, "bob")
		b.open("d", "cb", nil)
		Expect(b.recv().GetOpened()).To(SatisfyAll(HaveField("Version", uint64(1)), HaveField("Text", "hello")))
		c := openStream(ctx, cc, "cy")
		c.open("d", "cc", u64(0))
		Expect(c.recv().GetOpened()).To(SatisfyAll(HaveField("Version", uint64(1)), HaveField("ReplayFrom", uint64(1))))
		Expect(c.recv().GetOp()).To(SatisfyAll(HaveField("Version", uint64(1)), HaveField("Replay", true), HaveField("ClientId", "ca")))
		text, v, err := srv.svc.Text("d")
		Expect(err).NotTo(HaveOccurred())
		Expect(text).To(Equal("hello"))
		Expect(v).To(Equal(uint64(1)))

		By("an op based on the version not yet applied lands after it once the feed catches up")
		b.submit("d", "cb", 1, 1, must(ot.Splice(5, 5, 0, "!")))
		gated.release()
		Expect(b.recv().GetAck().GetVersion()).To(Equal(uint64(2)))
		Expect(a.recv().GetOp()).To(SatisfyAll(HaveField("Version", uint64(2)), HaveField("ClientId", "cb")))
		Expect(c.recv().GetOp().GetVersion()).To(Equal(uint64(2)))
		Eventually(func() (string, error) {
			t, _, err := srv.svc.Text("d")
			return t, err
		}).WithContext(ctx).Should(Equal("hello!"))
		for _, s := range []*rawStream{a, b, c} {
			Expect(s.finish()).To(Succeed())
		}
	}, SpecTimeout(20*time.Second))
})
