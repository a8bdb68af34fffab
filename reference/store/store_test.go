package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"

	"github.com/bidikit/bidikit/reference/store"
)

// opener opens a fresh store for one spec and closes it in the spec's
// cleanup.
type opener func() store.Store

func openMemory() store.Store {
	s := store.NewMemory(0)
	DeferCleanup(s.Close)
	return s
}

func openSQLite() store.Store {
	return openSQLiteAt(filepath.Join(GinkgoT().TempDir(), "log.db"))
}

func openSQLiteAt(path string, opts ...store.SQLiteOption) *store.SQLite {
	s, err := store.OpenSQLite(path, opts...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(s.Close)
	return s
}

// bothStores runs a conformance table against each implementation.
var bothStores = []TableEntry{
	Entry("Memory", opener(openMemory)),
	Entry("SQLite", opener(openSQLite)),
}

func rec(stream string, seq uint64) store.Record {
	return store.Record{
		Stream:    stream,
		Seq:       seq,
		Key:       fmt.Sprintf("key-%d", seq),
		UnixNanos: int64(1_700_000_000_000_000_000 + seq),
		Payload:   []byte(fmt.Sprintf("payload %s/%d", stream, seq)),
	}
}

func recs(stream string, from, to uint64) []store.Record {
	var out []store.Record
	for seq := from; seq <= to; seq++ {
		out = append(out, rec(stream, seq))
	}
	return out
}

// waitFor waits (generously) until wg is done.
func waitFor(wg *sync.WaitGroup) {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	Eventually(ch).WithTimeout(30 * time.Second).Should(BeClosed())
}

// appendAll appends rs and waits for every callback; it returns their
// errors by position.
func appendAll(s store.Store, rs ...store.Record) []error {
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	wg.Add(len(rs))
	for i, r := range rs {
		s.Append(r, func(err error) { errs[i] = err; wg.Done() })
	}
	waitFor(&wg)
	return errs
}

func putSnapshot(s store.Store, snap store.Snapshot) error {
	ch := make(chan error, 1)
	s.PutSnapshot(snap, func(err error) { ch <- err })
	var err error
	Eventually(ch).WithTimeout(30 * time.Second).Should(Receive(&err))
	return err
}

func collect(s store.Store, stream string, from, to uint64) []store.Record {
	var out []store.Record
	Expect(s.Range(stream, from, to, func(r store.Record) error {
		out = append(out, r)
		return nil
	})).To(Succeed())
	return out
}

// latest returns stream's snapshot, which must exist.
func latest(s store.Store, stream string) store.Snapshot {
	snap, ok, err := s.LatestSnapshot(stream)
	Expect(err).NotTo(HaveOccurred())
	Expect(ok).To(BeTrue(), "snapshot of %s", stream)
	return snap
}

func seqs(rs []store.Record) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

var _ = Describe("Store conformance", func() {
	DescribeTable("calls every callback once, in Append order, snapshots included",
		func(open opener) {
			s := open()
			const ops = 600
			var (
				mu    sync.Mutex
				order []int
				errs  []error
				wg    sync.WaitGroup
			)
			done := func(i int) func(error) {
				return func(err error) {
					mu.Lock()
					order = append(order, i)
					errs = append(errs, err)
					mu.Unlock()
					wg.Done()
				}
			}
			wg.Add(ops)
			streams := []string{"chat/a", "chat/b", "collab/c"}
			next := map[string]uint64{}
			for i := range ops {
				st := streams[i%len(streams)]
				if i%50 == 49 {
					s.PutSnapshot(store.Snapshot{Stream: st, Seq: next[st], Data: []byte("snap")}, done(i))
					continue
				}
				next[st]++
				s.Append(rec(st, next[st]), done(i))
			}
			waitFor(&wg)
			mu.Lock()
			defer mu.Unlock()
			want := make([]int, ops)
			for i := range want {
				want[i] = i
			}
			Expect(order).To(Equal(want))
			for _, err := range errs {
				Expect(err).NotTo(HaveOccurred())
			}
		},
		bothStores,
	)

	DescribeTable("reports Head, Range and FindKey of committed records",
		func(open opener) {
			s := open()
			h, err := s.Head("chat/a")
			Expect(err).NotTo(HaveOccurred())
			Expect(h).To(Equal(store.Head{}))

			rs := recs("chat/a", 1, 10)
			rs[3].Key = "" // a record without key
			buf := rs[0].Payload
			Expect(appendAll(s, rs...)).To(HaveEach(Not(HaveOccurred())))
			copy(buf, "XXXXXXX") // the store copied the payload
			Expect(appendAll(s, recs("chat/b", 1, 3)...)).To(HaveEach(Not(HaveOccurred())))

			Expect(s.Head("chat/a")).To(Equal(store.Head{Last: 10, Oldest: 1}))
			Expect(s.Head("chat/b")).To(Equal(store.Head{Last: 3, Oldest: 1}))
			Expect(s.Head("nope")).To(Equal(store.Head{}))

			want := recs("chat/a", 1, 10)
			want[3].Key = ""
			Expect(collect(s, "chat/a", 3, 5)).To(Equal(want[2:5]))
			Expect(collect(s, "chat/a", 0, math.MaxUint64)).To(Equal(want))
			Expect(collect(s, "chat/a", 9, 100)).To(Equal(want[8:]))
			Expect(collect(s, "chat/a", 11, 20)).To(BeEmpty())
			Expect(collect(s, "chat/a", 5, 4)).To(BeEmpty())
			Expect(collect(s, "nope", 0, math.MaxUint64)).To(BeEmpty())

			stop := errors.New("stop here")
			calls := 0
			Expect(s.Range("chat/a", 1, 10, func(store.Record) error {
				if calls++; calls == 3 {
					return stop
				}
				return nil
			})).To(MatchError(stop))
			Expect(calls).To(Equal(3))

			seq, ok, err := s.FindKey("chat/a", "key-7")
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(BeTrue())
			Expect(seq).To(BeEquivalentTo(7))
			_, ok, err = s.FindKey("chat/a", "key-4") // stored without key
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(BeFalse())
			_, ok, err = s.FindKey("chat/b", "key-7") // keys are per stream
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(BeFalse())
			_, ok, err = s.FindKey("nope", "key-1")
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(BeFalse())
		},
		bothStores,
	)

	DescribeTable("makes a record readable as soon as its callback ran",
		func(open opener) {
			s := open()
			for seq := uint64(1); seq <= 30; seq++ {
				Expect(appendAll(s, rec("chat/a", seq))).To(HaveEach(Not(HaveOccurred())))
				h, err := s.Head("chat/a")
				Expect(err).NotTo(HaveOccurred())
				Expect(h.Last).To(Equal(seq))
				got, ok, err := s.FindKey("chat/a", fmt.Sprintf("key-%d", seq))
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(BeTrue())
				Expect(got).To(Equal(seq))
			}
		},
		bothStores,
	)

	DescribeTable("orders a snapshot after the appends issued before it",
		func(open opener) {
			s := open()
			_, ok, err := s.LatestSnapshot("collab/doc")
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(BeFalse())

			var appended atomic.Int64
			for _, r := range recs("collab/doc", 1, 200) {
				s.Append(r, func(err error) {
					if err == nil {
						appended.Add(1)
					}
				})
			}
			var atSnapshot int64
			ch := make(chan error, 1)
			s.PutSnapshot(store.Snapshot{Stream: "collab/doc", Seq: 200, Data: []byte("text@200")}, func(err error) {
				atSnapshot = appended.Load()
				ch <- err
			})
			Eventually(ch).WithTimeout(30 * time.Second).Should(Receive(BeNil()))
			Expect(atSnapshot).To(BeEquivalentTo(200))
			Expect(latest(s, "collab/doc")).To(Equal(store.Snapshot{Stream: "collab/doc", Seq: 200, Data: []byte("text@200")}))

			Expect(putSnapshot(s, store.Snapshot{Stream: "collab/doc", Seq: 300, Data: []byte("text@300")})).To(Succeed())
			Expect(latest(s, "collab/doc")).To(Equal(store.Snapshot{Stream: "collab/doc", Seq: 300, Data: []byte("text@300")}))

			// A stream known only from its snapshot reports it as its head.
			Expect(putSnapshot(s, store.Snapshot{Stream: "collab/other", Seq: 42, Data: []byte("x")})).To(Succeed())
			Expect(s.Head("collab/other")).To(Equal(store.Head{Last: 42}))
		},
		bothStores,
	)

	DescribeTable("keeps each stream in order under many concurrent appenders, losing nothing",
		func(open opener) {
			s := open()
			const streams, writers, each = 8, 4, 100
			type streamState struct {
				mu        sync.Mutex // held across Append, as a service does
				next      uint64
				committed []uint64
				failed    []error
			}
			states := make([]*streamState, streams)
			for i := range states {
				states[i] = &streamState{}
			}
			var wg, callbacks sync.WaitGroup
			callbacks.Add(streams * writers * each)
			for w := range streams * writers {
				wg.Go(func() {
					st := states[w%streams]
					name := fmt.Sprintf("room/%d", w%streams)
					for range each {
						st.mu.Lock()
						st.next++
						seq := st.next
						s.Append(rec(name, seq), func(err error) {
							// Callbacks run one at a time (on the writer, or
							// under Memory's callback lock), in Append order.
							if err != nil {
								st.failed = append(st.failed, err)
							}
							st.committed = append(st.committed, seq)
							callbacks.Done()
						})
						st.mu.Unlock()
					}
				})
			}
			waitFor(&wg)
			waitFor(&callbacks)
			for i, st := range states {
				name := fmt.Sprintf("room/%d", i)
				Expect(st.failed).To(BeEmpty())
				Expect(st.committed).To(Equal(seqRange(1, writers*each)), "callbacks of %s in seq order", name)
				Expect(s.Head(name)).To(Equal(store.Head{Last: writers * each, Oldest: 1}))
				got := collect(s, name, 1, math.MaxUint64)
				Expect(got).To(Equal(recs(name, 1, writers*each)))
			}
		},
		bothStores,
	)

	DescribeTable("Close commits what is queued and refuses later work",
		func(open opener) {
			s := open()
			var called, failed atomic.Int64
			for _, r := range recs("chat/a", 1, 500) {
				s.Append(r, func(err error) {
					if err != nil {
						failed.Add(1)
					}
					called.Add(1)
				})
			}
			Expect(s.Close()).To(Succeed())
			// Not a timing assertion: Close returns only after the callbacks.
			Expect(called.Load()).To(BeEquivalentTo(500))
			Expect(failed.Load()).To(BeZero())

			var after error
			s.Append(rec("chat/a", 501), func(err error) { after = err })
			Expect(after).To(MatchError(store.ErrClosed))
			after = nil
			s.PutSnapshot(store.Snapshot{Stream: "chat/a", Seq: 500}, func(err error) { after = err })
			Expect(after).To(MatchError(store.ErrClosed))

			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					defer GinkgoRecover()
					Expect(s.Close()).To(Succeed())
				})
			}
			waitFor(&wg)
		},
		bothStores,
	)

	DescribeTable("drops the oldest records beyond retention and says so in Head.Oldest",
		func(open func() store.Store) {
			s := open()
			Expect(appendAll(s, recs("chat/a", 1, 12)...)).To(HaveEach(Not(HaveOccurred())))
			Expect(appendAll(s, recs("chat/b", 1, 3)...)).To(HaveEach(Not(HaveOccurred())))
			Eventually(s.Head).WithArguments("chat/a").WithTimeout(10 * time.Second).
				Should(Equal(store.Head{Last: 12, Oldest: 8}))
			Expect(s.Head("chat/b")).To(Equal(store.Head{Last: 3, Oldest: 1}))
			Expect(seqs(collect(s, "chat/a", 0, math.MaxUint64))).To(Equal(seqRange(8, 12)))
			Expect(seqs(collect(s, "chat/a", 1, 9))).To(Equal(seqRange(8, 9)))
			_, ok, err := s.FindKey("chat/a", "key-1")
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(BeFalse())
			seq, ok, err := s.FindKey("chat/a", "key-12")
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(BeTrue())
			Expect(seq).To(BeEquivalentTo(12))
		},
		Entry("Memory", func() store.Store {
			s := store.NewMemory(5)
			DeferCleanup(s.Close)
			return s
		}),
		Entry("SQLite", func() store.Store {
			return openSQLiteAt(filepath.Join(GinkgoT().TempDir(), "log.db"), store.WithRetain(5))
		}),
	)

	DescribeTable("Durable says whether a crash keeps committed records",
		func(open opener, durable bool) {
			Expect(open().Durable()).To(Equal(durable))
		},
		Entry("Memory", opener(openMemory), false),
		Entry("SQLite", opener(openSQLite), true),
	)
})

var _ = Describe("SQLite", func() {
	It("keeps records, keys and snapshots across close and reopen", func() {
		path := filepath.Join(GinkgoT().TempDir(), "log.db")
		s, err := store.OpenSQLite(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(appendAll(s, recs("chat/a", 1, 300)...)).To(HaveEach(Not(HaveOccurred())))
		Expect(appendAll(s, recs("collab/d", 1, 20)...)).To(HaveEach(Not(HaveOccurred())))
		Expect(putSnapshot(s, store.Snapshot{Stream: "collab/d", Seq: 20, Data: []byte("doc")})).To(Succeed())
		Expect(s.Close()).To(Succeed())

		s = openSQLiteAt(path)
		Expect(s.Head("chat/a")).To(Equal(store.Head{Last: 300, Oldest: 1}))
		Expect(collect(s, "chat/a", 1, 300)).To(Equal(recs("chat/a", 1, 300)))
		Expect(collect(s, "collab/d", 0, math.MaxUint64)).To(Equal(recs("collab/d", 1, 20)))
		seq, ok, err := s.FindKey("chat/a", "key-123")
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())
		Expect(seq).To(BeEquivalentTo(123))
		Expect(latest(s, "collab/d")).To(Equal(store.Snapshot{Stream: "collab/d", Seq: 20, Data: []byte("doc")}))

		Expect(appendAll(s, rec("chat/a", 301))).To(HaveEach(Not(HaveOccurred())))
		Expect(s.Head("chat/a")).To(Equal(store.Head{Last: 301, Oldest: 1}))
	})

	It("migrates a version 1 store (one row per record): records, keys and snapshots read back, appends go on", func() {
		path := filepath.Join(GinkgoT().TempDir(), "v1.db")
		db, err := sql.Open("sqlite", path)
		Expect(err).NotTo(HaveOccurred())
		for _, q := range []string{
			`CREATE TABLE bidikit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)`,
			`INSERT INTO bidikit_meta (name, value) VALUES ('schema_version', '1')`,
			`CREATE TABLE records (stream TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL DEFAULT '',
				unix_nanos INTEGER NOT NULL, payload BLOB, PRIMARY KEY (stream, seq)) WITHOUT ROWID`,
			`CREATE UNIQUE INDEX records_key ON records (stream, key) WHERE key != ''`,
			`CREATE TABLE snapshots (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL, data BLOB)`,
			`INSERT INTO snapshots VALUES ('collab/d', 3, 'doc')`,
		} {
			_, err := db.Exec(q)
			Expect(err).NotTo(HaveOccurred(), q)
		}
		// 300 records of chat/a (more than one chunk holds), 3 of collab/d,
		// one without a key.
		want := append(recs("chat/a", 1, 300), recs("collab/d", 1, 3)...)
		want[301].Key = ""
		for _, r := range want {
			_, err := db.Exec(`INSERT INTO records VALUES (?, ?, ?, ?, ?)`, r.Stream, int64(r.Seq), r.Key, r.UnixNanos, r.Payload)
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(db.Close()).To(Succeed())

		s := openSQLiteAt(path)
		Expect(s.Head("chat/a")).To(Equal(store.Head{Last: 300, Oldest: 1}))
		Expect(collect(s, "chat/a", 0, math.MaxUint64)).To(Equal(want[:300]))
		Expect(collect(s, "chat/a", 127, 131)).To(Equal(want[126:131]))
		Expect(collect(s, "collab/d", 0, math.MaxUint64)).To(Equal(want[300:]))
		seq, ok, err := s.FindKey("chat/a", "key-250")
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())
		Expect(seq).To(BeEquivalentTo(250))
		Expect(latest(s, "collab/d")).To(Equal(store.Snapshot{Stream: "collab/d", Seq: 3, Data: []byte("doc")}))
		errs := appendAll(s, rec("chat/a", 300), rec("chat/a", 301))
		Expect(errs[0]).To(MatchError(store.ErrConflict), "seq 300 is stored")
		Expect(errs[1]).NotTo(HaveOccurred())
		Expect(s.Close()).To(Succeed())

		db, err = sql.Open("sqlite", path)
		Expect(err).NotTo(HaveOccurred())
		defer db.Close()
		var version string
		Expect(db.QueryRow(`SELECT value FROM bidikit_meta WHERE name = 'schema_version'`).Scan(&version)).To(Succeed())
		Expect(version).To(Equal("2"))
		var tables int
		Expect(db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'records'`).Scan(&tables)).To(Succeed())
		Expect(tables).To(BeZero(), "the records table is dropped")
	})

	It("reads any window across chunk boundaries, streams committed interleaved", func() {
		path := filepath.Join(GinkgoT().TempDir(), "log.db")
		s := openSQLiteAt(path)
		var batch []store.Record
		for seq := uint64(1); seq <= 700; seq++ { // one batch: a, b, a, b, ...
			batch = append(batch, rec("chat/a", seq), rec("chat/b", seq))
		}
		Expect(appendAll(s, batch...)).To(HaveEach(Not(HaveOccurred())))
		Expect(appendAll(s, recs("chat/a", 701, 705)...)).To(HaveEach(Not(HaveOccurred())))
		db, err := sql.Open("sqlite", path)
		Expect(err).NotTo(HaveOccurred())
		defer db.Close()
		var chunks, most int
		Expect(db.QueryRow(`SELECT count(*), max(last - first + 1) FROM chunks WHERE stream = 'chat/a'`).Scan(&chunks, &most)).To(Succeed())
		Expect(most).To(BeNumerically("<=", 128), "a read decodes at most a bounded chunk")
		Expect(chunks).To(BeNumerically(">=", 7), "700 records of one commit in chunks of at most 128, and the next commit's")
		for _, w := range [][2]uint64{{0, 1}, {1, 705}, {127, 130}, {128, 128}, {129, 129}, {256, 257}, {600, 702}, {705, 900}, {706, 800}} {
			got := seqs(collect(s, "chat/a", w[0], w[1]))
			if want := seqRange(max(w[0], 1), min(w[1], 705)); len(want) > 0 {
				Expect(got).To(Equal(want), "chat/a %v", w)
			} else {
				Expect(got).To(BeEmpty(), "chat/a %v", w)
			}
		}
		Expect(collect(s, "chat/b", 300, 302)).To(Equal(recs("chat/b", 300, 302)))
		// fn's error ends Range and is returned as it is.
		stop := errors.New("enough")
		n := 0
		Expect(s.Range("chat/a", 1, 705, func(store.Record) error {
			if n++; n == 200 {
				return stop
			}
			return nil
		})).To(MatchError(stop))
		Expect(n).To(Equal(200))
	})

	It("names the stream, the seq and the byte where a stored chunk is corrupt", func() {
		path := filepath.Join(GinkgoT().TempDir(), "log.db")
		s, err := store.OpenSQLite(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(appendAll(s, recs("chat/a", 1, 3)...)).To(HaveEach(Not(HaveOccurred())))
		Expect(s.Close()).To(Succeed())
		db, err := sql.Open("sqlite", path)
		Expect(err).NotTo(HaveOccurred())
		_, err = db.Exec(`UPDATE chunks SET data = substr(data, 1, length(data) - 2) WHERE stream = 'chat/a'`)
		Expect(err).NotTo(HaveOccurred())
		Expect(db.Close()).To(Succeed())

		s = openSQLiteAt(path)
		err = s.Range("chat/a", 1, 3, func(store.Record) error { return nil })
		Expect(err).To(MatchError(And(ContainSubstring("log.db"), ContainSubstring(`chunk of "chat/a" at seq 1 is corrupt`),
			ContainSubstring("payload longer than the chunk"))))
	})

	It("uses the file name as given, even with URI characters in it", func() {
		path := filepath.Join(GinkgoT().TempDir(), "my log?mode=ro#1.db")
		s := openSQLiteAt(path)
		Expect(appendAll(s, rec("chat/a", 1))).To(HaveEach(Not(HaveOccurred())))
		Expect(path).To(BeAnExistingFile())
	})

	It("fails only the records that repeat a stored seq or key, with ErrConflict", func() {
		s := openSQLiteAt(filepath.Join(GinkgoT().TempDir(), "log.db"))
		Expect(appendAll(s, recs("chat/a", 1, 2)...)).To(HaveEach(Not(HaveOccurred())))
		batch := recs("chat/a", 3, 10)
		batch[2].Key = "key-1" // seq 5 repeats a stored key
		batch[4].Key = "key-4" // seq 7 repeats a key of its own batch
		batch = append(batch, rec("chat/a", 2))
		errs := appendAll(s, batch...)
		for i, err := range errs {
			switch i {
			case 2, 4, 8:
				Expect(err).To(MatchError(store.ErrConflict), "record %d", i)
				Expect(err.Error()).To(ContainSubstring("log.db"))
			default:
				Expect(err).NotTo(HaveOccurred(), "record %d", i)
			}
		}
		Expect(seqs(collect(s, "chat/a", 0, math.MaxUint64))).To(Equal([]uint64{1, 2, 3, 4, 6, 8, 9, 10}))
	})

	It("fails every callback of a batch whose commit fails, with context, and keeps going", func() {
		path := filepath.Join(GinkgoT().TempDir(), "log.db")
		logs := gbytes.NewBuffer()
		s := openSQLiteAt(path, store.WithBusyTimeout(20*time.Millisecond),
			store.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
		Expect(appendAll(s, rec("chat/a", 1))).To(HaveEach(Not(HaveOccurred())))

		// Another connection holds the write lock past the busy timeout.
		other, err := sql.Open("sqlite", path)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(other.Close)
		conn, err := other.Conn(context.Background())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
		Expect(err).NotTo(HaveOccurred())

		errs := appendAll(s, recs("chat/a", 2, 5)...)
		for _, err := range errs {
			Expect(err).To(MatchError(ContainSubstring("store " + path + ": commit batch of")))
			Expect(err).To(MatchError(ContainSubstring("locked")))
		}
		Eventually(logs).Should(gbytes.Say("store commit failed"))

		_, err = conn.ExecContext(context.Background(), "ROLLBACK")
		Expect(err).NotTo(HaveOccurred())
		Expect(appendAll(s, recs("chat/a", 2, 5)...)).To(HaveEach(Not(HaveOccurred())))
		Expect(s.Head("chat/a")).To(Equal(store.Head{Last: 5, Oldest: 1}))
	})

	It("fails a record whose seq does not fit SQLite's integer without failing its neighbours", func() {
		s := openSQLiteAt(filepath.Join(GinkgoT().TempDir(), "log.db"))
		errs := appendAll(s, rec("chat/a", 1), rec("chat/a", math.MaxUint64), rec("chat/a", 2))
		Expect(errs[0]).NotTo(HaveOccurred())
		Expect(errs[1]).To(MatchError(ContainSubstring("seq above")))
		Expect(errs[2]).NotTo(HaveOccurred())
		Expect(s.Head("chat/a")).To(Equal(store.Head{Last: 2, Oldest: 1}))
	})

	It("applies back-pressure with a tiny queue without losing or reordering records", func() {
		s := openSQLiteAt(filepath.Join(GinkgoT().TempDir(), "log.db"), store.WithQueue(1), store.WithMaxBatch(3))
		var wg, cbs sync.WaitGroup
		var failed atomic.Int64
		cbs.Add(10 * 30)
		for w := range 10 {
			wg.Go(func() {
				name := fmt.Sprintf("room/%d", w)
				for seq := uint64(1); seq <= 30; seq++ {
					s.Append(rec(name, seq), func(err error) {
						if err != nil {
							failed.Add(1)
						}
						cbs.Done()
					})
				}
			})
		}
		waitFor(&wg)
		waitFor(&cbs)
		Expect(failed.Load()).To(BeZero())
		for w := range 10 {
			name := fmt.Sprintf("room/%d", w)
			Expect(collect(s, name, 0, math.MaxUint64)).To(Equal(recs(name, 1, 30)))
		}
	})

	It("answers reads after Close with ErrClosed", func() {
		s, err := store.OpenSQLite(filepath.Join(GinkgoT().TempDir(), "log.db"))
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Close()).To(Succeed())
		_, err = s.Head("a")
		Expect(err).To(MatchError(store.ErrClosed))
		Expect(s.Range("a", 0, 10, func(store.Record) error { return nil })).To(MatchError(store.ErrClosed))
		_, _, err = s.FindKey("a", "k")
		Expect(err).To(MatchError(store.ErrClosed))
		_, _, err = s.LatestSnapshot("a")
		Expect(err).To(MatchError(store.ErrClosed))
	})

	DescribeTable("refuses what it cannot use, naming the path and the problem",
		func(setup func(dir string) string, opts []store.SQLiteOption, want string) {
			path := setup(GinkgoT().TempDir())
			s, err := store.OpenSQLite(path, opts...)
			if err == nil {
				_ = s.Close()
			}
			Expect(err).To(HaveOccurred())
			GinkgoWriter.Println(err)
			Expect(err.Error()).To(HavePrefix("open " + path + ": "))
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry("a missing directory", func(dir string) string {
			return filepath.Join(dir, "missing", "log.db")
		}, nil, "no such file or directory"),
		Entry("a directory", func(dir string) string { return dir }, nil, "is a directory"),
		Entry("a text file", func(dir string) string {
			p := filepath.Join(dir, "notes.txt")
			text := make([]byte, 0, 8192)
			for len(text) < 8000 {
				text = append(text, "these are notes, not a database\n"...)
			}
			Expect(os.WriteFile(p, text, 0o600)).To(Succeed())
			return p
		}, nil, "not a bidikit database"),
		Entry("another application's SQLite database", func(dir string) string {
			p := filepath.Join(dir, "other.db")
			db, err := sql.Open("sqlite", p)
			Expect(err).NotTo(HaveOccurred())
			defer db.Close()
			_, err = db.Exec(`CREATE TABLE users (name TEXT)`)
			Expect(err).NotTo(HaveOccurred())
			return p
		}, nil, "not a bidikit database"),
		Entry("a store of a newer schema version", func(dir string) string {
			p := filepath.Join(dir, "log.db")
			s, err := store.OpenSQLite(p)
			Expect(err).NotTo(HaveOccurred())
			Expect(s.Close()).To(Succeed())
			db, err := sql.Open("sqlite", p)
			Expect(err).NotTo(HaveOccurred())
			defer db.Close()
			_, err = db.Exec(`UPDATE bidikit_meta SET value = '99' WHERE name = 'schema_version'`)
			Expect(err).NotTo(HaveOccurred())
			return p
		}, nil, "schema version 99"),
		Entry("a bad option", func(dir string) string {
			return filepath.Join(dir, "log.db")
		}, []store.SQLiteOption{store.WithMaxBatch(0)}, "WithMaxBatch(0)"),
	)
})
