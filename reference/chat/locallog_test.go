package chat

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/reference/store"
)

// heldStore is a store.Store whose Appends wait until the spec lets them
// commit (commitNext), or fail them (failNext): it shows what the local log
// reports before and after a commit.
type heldStore struct {
	store.Store
	mu   sync.Mutex
	held []heldCommit
}

type heldCommit struct {
	rec  store.Record
	done func(error)
}

func newHeldStore() *heldStore {
	m := store.NewMemory(0)
	DeferCleanup(m.Close)
	return &heldStore{Store: m}
}

func (h *heldStore) Append(rec store.Record, done func(error)) {
	rec.Payload = append([]byte(nil), rec.Payload...)
	h.mu.Lock()
	h.held = append(h.held, heldCommit{rec, done})
	h.mu.Unlock()
}

func (h *heldStore) waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

func (h *heldStore) take() heldCommit {
	h.mu.Lock()
	defer h.mu.Unlock()
	Expect(h.held).NotTo(BeEmpty(), "no Append is waiting")
	a := h.held[0]
	h.held = h.held[1:]
	return a
}

// commitNext commits the oldest waiting Append in the memory store.
func (h *heldStore) commitNext() { a := h.take(); h.Store.Append(a.rec, a.done) }

// failNext fails the oldest waiting Append without storing it.
func (h *heldStore) failNext(err error) { h.take().done(err) }

// answer is one done call of a publish.
type answer struct {
	seq uint64
	dup bool
	err error
}

// answers collects done calls, in call order.
type answers struct {
	mu  sync.Mutex
	got []answer
}

func (a *answers) done(seq uint64, dup bool, err error) {
	a.mu.Lock()
	a.got = append(a.got, answer{seq, dup, err})
	a.mu.Unlock()
}

func (a *answers) list() []answer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]answer(nil), a.got...)
}

// fed collects a feed's deliveries.
type fed struct {
	mu   sync.Mutex
	seqs []uint64
	body []string
}

func (f *fed) fn(seq uint64, payload []byte) {
	f.mu.Lock()
	f.seqs = append(f.seqs, seq)
	f.body = append(f.body, string(payload))
	f.mu.Unlock()
}

func (f *fed) list() ([]uint64, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.seqs...), append([]string(nil), f.body...)
}

func follow(lg *localLog, room string, after uint64) *fed {
	GinkgoHelper()
	f := &fed{}
	stop, err := lg.Follow(room, after, f.fn, nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)
	return f
}

func openSQLiteStore() store.Store {
	GinkgoHelper()
	st, err := store.OpenSQLite(filepath.Join(GinkgoT().TempDir(), "chat.db"))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(st.Close)
	return st
}

func openMemoryStore() store.Store {
	st := store.NewMemory(0)
	DeferCleanup(st.Close)
	return st
}

var _ = Describe("the local log (a SharedLog over a store)", func() {
	DescribeTable("orders concurrent publishes of a room without gaps, and feeds and ranges them in seq order once committed",
		func(ctx SpecContext, open func() store.Store) {
			st := open()
			lg := newLocalLog(st, "chat/")
			f := follow(lg, "r", 0)
			const writers, each = 8, 50
			var a answers
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						lg.Publish("r", fmt.Sprintf("w%d-%d", w, i), []byte(fmt.Sprintf("w%d-%d", w, i)), a.done)
					}
				})
			}
			wg.Wait()
			Eventually(ctx, func() int { return len(a.list()) }).Should(Equal(writers * each))
			seen := map[uint64]bool{}
			for _, x := range a.list() {
				Expect(x.err).NotTo(HaveOccurred())
				Expect(x.dup).To(BeFalse())
				seen[x.seq] = true
			}
			Expect(seen).To(HaveLen(writers * each))
			Eventually(ctx, func() int { s, _ := f.list(); return len(s) }).Should(Equal(writers * each))
			seqs, bodies := f.list()
			for i, s := range seqs {
				Expect(s).To(BeEquivalentTo(i+1), "feed delivery %d", i)
			}
			ranged := map[uint64]string{}
			Expect(lg.Range(ctx, "r", 1, writers*each, func(seq uint64, p []byte) error {
				ranged[seq] = string(p)
				return nil
			})).To(Succeed())
			for i, s := range seqs {
				Expect(ranged[s]).To(Equal(bodies[i]), "seq %d: the feed and the store disagree", s)
			}
			// Each writer's messages keep their order.
			next := map[string]int{}
			for _, b := range bodies {
				var w, i int
				_, err := fmt.Sscanf(b, "w%d-%d", &w, &i)
				Expect(err).NotTo(HaveOccurred())
				Expect(i).To(Equal(next[fmt.Sprint(w)]), "writer %d", w)
				next[fmt.Sprint(w)]++
			}
			h, err := lg.Head(ctx, "r")
			Expect(err).NotTo(HaveOccurred())
			Expect(h).To(Equal(store.Head{Last: writers * each, Oldest: 1}))
		},
		Entry("memory store (no --db)", openMemoryStore, SpecTimeout(30*time.Second)),
		Entry("SQLite store", openSQLiteStore, SpecTimeout(30*time.Second)),
	)

	It("reports an entry (done, feed, head) only after the store committed it, in seq order", func(ctx SpecContext) {
		hs := newHeldStore()
		lg := newLocalLog(hs, "chat/")
		f := follow(lg, "r", 0)
		var a answers
		lg.Publish("r", "k1", []byte("one"), a.done)
		lg.Publish("r", "k2", []byte("two"), a.done)
		Expect(hs.waiting()).To(Equal(2))
		Expect(a.list()).To(BeEmpty(), "answered before the commit")
		seqs, _ := f.list()
		Expect(seqs).To(BeEmpty(), "fed before the commit")
		h, err := lg.Head(ctx, "r")
		Expect(err).NotTo(HaveOccurred())
		Expect(h.Last).To(BeZero(), "head moved before the commit")

		hs.commitNext()
		Expect(a.list()).To(Equal([]answer{{seq: 1}}))
		seqs, bodies := f.list()
		Expect(seqs).To(Equal([]uint64{1}))
		Expect(bodies).To(Equal([]string{"one"}))
		hs.commitNext()
		Expect(a.list()).To(Equal([]answer{{seq: 1}, {seq: 2}}))
		seqs, _ = f.list()
		Expect(seqs).To(Equal([]uint64{1, 2}))

		By("a feed that starts behind the head catches up from the store")
		late := follow(lg, "r", 1)
		seqs, _ = late.list()
		Expect(seqs).To(Equal([]uint64{2}))
	}, SpecTimeout(10*time.Second))

	It("answers resends as duplicates with the first copy's seq: in flight (at its commit), committed, and after a reload", func(ctx SpecContext) {
		hs := newHeldStore()
		lg := newLocalLog(hs, "chat/")
		var a answers
		lg.Publish("r", "k", []byte("first"), a.done)
		res := lg.place("r", "", "k", []byte("again"), 0, true, a.done) // fresh: the in-flight copy still wins
		Expect(res).To(Equal(published{seq: 1, dup: true}))
		Expect(a.list()).To(BeEmpty(), "a duplicate of an entry in flight was answered before its commit")
		Expect(hs.waiting()).To(Equal(1), "the resend was stored again")
		hs.commitNext()
		Expect(a.list()).To(Equal([]answer{{seq: 1}, {seq: 1, dup: true}}))

		lg.Publish("r", "k", []byte("third"), a.done)
		Expect(hs.waiting()).To(BeZero(), "a resend of a committed entry was stored again")
		Expect(a.list()).To(HaveLen(3))
		Expect(a.list()[2]).To(Equal(answer{seq: 1, dup: true}))

		reloaded := newLocalLog(hs, "chat/")
		var b answers
		reloaded.Publish("r", "k", []byte("fourth"), b.done)
		Expect(hs.waiting()).To(BeZero())
		Expect(b.list()).To(Equal([]answer{{seq: 1, dup: true}}))
		reloaded.Publish("r", "k2", []byte("new"), b.done)
		hs.commitNext()
		Expect(b.list()[1]).To(Equal(answer{seq: 2}), "seqs do not continue after the stored head")
	}, SpecTimeout(10*time.Second))

	It("stores a writer's entry only right after the writer's newest one (PublishAfter), and refuses it with ErrConflict otherwise", func(ctx SpecContext) {
		st := openMemoryStore()
		lg := newLocalLog(st, "chat/")
		f := follow(lg, "r", 0)
		var a answers
		lg.PublishAfter("r", "w", "k1", []byte("one"), 0, a.done)
		lg.Publish("r", "other", []byte("other"), a.done)
		lg.PublishAfter("r", "w", "k2", []byte("two"), 0, a.done) // w's newest is at 1, not 0
		lg.PublishAfter("r", "w", "k3", []byte("three"), 2, a.done)
		got := a.list()
		Expect(got).To(HaveLen(4))
		Expect(got[0]).To(Equal(answer{seq: 1}))
		Expect(got[1]).To(Equal(answer{seq: 2}))
		Expect(got[2].err).To(MatchError(store.ErrConflict))
		Expect(got[3].err).To(MatchError(store.ErrConflict))
		seqs, _ := f.list()
		Expect(seqs).To(Equal([]uint64{1, 2}), "a refused entry was stored")
		lg.PublishAfter("r", "w", "k2", []byte("two"), 1, a.done)
		Expect(a.list()[4]).To(Equal(answer{seq: 3}))

		seq, payload, found, err := lg.WriterLast(ctx, "r", "w")
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeTrue())
		Expect(seq).To(BeEquivalentTo(3))
		Expect(string(payload)).To(Equal("two"))
		seq, found, err = lg.WriterKey(ctx, "r", "w", "k1", 3)
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeTrue())
		Expect(seq).To(BeEquivalentTo(1))
		_, found, err = lg.WriterKey(ctx, "r", "w", "k3", 3)
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeFalse(), "a refused entry's key was found")
	}, SpecTimeout(10*time.Second))

	It("fails every entry after a failed commit and refuses the room until it is reloaded", func(ctx SpecContext) {
		hs := newHeldStore()
		lg := newLocalLog(hs, "chat/")
		f := follow(lg, "r", 0)
		var a answers
		lg.Publish("r", "k1", []byte("one"), a.done)
		lg.Publish("r", "k2", []byte("two"), a.done)
		hs.failNext(errors.New("injected: disk full"))
		hs.commitNext() // stored, but after a failed entry: never reported as committed
		got := a.list()
		Expect(got).To(HaveLen(2))
		Expect(got[0].err).To(MatchError(ContainSubstring("disk full")))
		Expect(got[1].err).To(MatchError(ContainSubstring("disk full")))
		seqs, _ := f.list()
		Expect(seqs).To(BeEmpty())
		lg.Publish("r", "k3", []byte("three"), a.done)
		Expect(a.list()[2].err).To(MatchError(ContainSubstring("refuses messages after a failed commit")))
		Expect(hs.waiting()).To(BeZero())
	}, SpecTimeout(10*time.Second))

	It("forgets a room once no feed follows it and nothing is in flight", func(_ SpecContext) {
		hs := newHeldStore()
		lg := newLocalLog(hs, "chat/")
		stop, err := lg.Follow("r", 0, func(uint64, []byte) {}, nil)
		Expect(err).NotTo(HaveOccurred())
		var a answers
		lg.Publish("r", "k1", []byte("one"), a.done)
		stop()
		lg.mu.Lock()
		Expect(lg.rooms).To(HaveKey("r"), "dropped with an entry in flight")
		lg.mu.Unlock()
		hs.commitNext()
		lg.mu.Lock()
		Expect(lg.rooms).To(BeEmpty())
		lg.mu.Unlock()
	}, SpecTimeout(10*time.Second))
})
