package chat

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/bidikit/bidikit/reference/store"
)

// localLog is the SharedLog of a single instance, over a store.Store (New
// wraps the store in one). It assigns each room's seqs itself and appends
// every entry to the store under the room's placement lock, so the store
// commits entries in seq order; an entry is reported (Publish's done,
// Follow's feeds) only after the store committed it.
//
// De-duplication: entries placed but not committed, by key, in memory;
// committed ones through store.FindKey (skipped for a Send the chain knows
// is fresh). Writer order: the newest entry each writer placed since the
// room was loaded, in memory. After a restart (or once the room was dropped
// from memory) a writer's first entry is not checked against what it
// stored before: the store keeps no writer index, so WriterLast answers
// "none" until the writer places again (resends are still answered as
// duplicates by key).
//
// A failed commit fails the room: every entry placed after it fails too
// and later placements are refused, until the room is dropped from memory
// (no feed, nothing in flight) and loaded from the store again.
//
// It also implements placer: place decides at once (a seq, a duplicate or
// a conflict) and done follows at commit, so a writer's Sends are
// pipelined into the store's group commit.
type localLog struct {
	st     store.Store
	prefix string // room R's store stream is prefix + R

	mu    sync.Mutex // guards rooms and every localRoom's refs; taken last
	rooms map[string]*localRoom
}

// localRoom is one room's state in a localLog. It stays in memory while it
// has references: a feed, an entry in flight, a call in progress.
//
// Lock order: seqMu, then mu, then the log's mu. The store's commit
// callback takes mu but never seqMu: with the memory store it runs inside
// Append, under seqMu.
type localRoom struct {
	name, stream string
	refs         int // guarded by localLog.mu

	// seqMu orders placements: loading the head, assigning a seq and
	// calling store.Append happen under it.
	seqMu   sync.Mutex
	loaded  bool
	next    uint64                 // last placed seq
	writers map[string]writerEntry // writer -> its newest placed entry

	// mu guards the commit side. Feeds are called under it, so a feed
	// registered under mu gets exactly the entries committed after.
	mu        sync.Mutex
	committed uint64
	failed    error                  // the first failed commit, nil while none
	pending   map[string]*localEntry // key -> placed, not yet committed
	feeds     []*localFeed
}

// writerEntry is a writer's newest placed entry.
type writerEntry struct {
	seq uint64
	key string
}

// localEntry is a placed entry waiting for its commit.
type localEntry struct {
	seq     uint64
	key     string
	payload []byte // the caller's; read-only
	done    func(uint64, bool, error)
	dups    []func(uint64, bool, error) // resends placed while in flight
}

// localFeed is one Follow.
type localFeed struct {
	after uint64 // delivers seqs above it
	fn    func(uint64, []byte)
}

// newLocalLog returns a log storing room R as stream prefix+R of st. The
// caller owns st.
func newLocalLog(st store.Store, prefix string) *localLog {
	return &localLog{st: st, prefix: prefix, rooms: map[string]*localRoom{}}
}

// acquire returns room's state with one more reference.
func (lg *localLog) acquire(room string) *localRoom {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	lr := lg.rooms[room]
	if lr == nil {
		lr = &localRoom{name: room, stream: lg.prefix + room, writers: map[string]writerEntry{}, pending: map[string]*localEntry{}}
		lg.rooms[room] = lr
	}
	lr.refs++
	return lr
}

// release drops one reference and forgets the room at zero.
func (lg *localLog) release(lr *localRoom) {
	lg.mu.Lock()
	lr.refs--
	if lr.refs <= 0 && lg.rooms[lr.name] == lr {
		delete(lg.rooms, lr.name)
	}
	lg.mu.Unlock()
}

// load reads lr's head from the store on first use, so seqs continue after
// a restart. Caller holds lr.seqMu.
func (lg *localLog) load(lr *localRoom) error {
	if lr.loaded {
		return nil
	}
	h, err := lg.st.Head(lr.stream)
	if err != nil {
		return fmt.Errorf("room %q: read the head of %s: %w", lr.name, lr.stream, err)
	}
	lr.next = h.Last
	lr.mu.Lock()
	lr.committed = h.Last
	lr.mu.Unlock()
	lr.loaded = true
	return nil
}

func (lg *localLog) atOnce() bool { return true }

// Publish implements SharedLog.
func (lg *localLog) Publish(room, key string, payload []byte, done func(uint64, bool, error)) {
	if res := lg.place(room, "", key, payload, 0, false, done); res.err != nil {
		done(0, false, res.err)
	}
}

// PublishAfter implements SharedLog.
func (lg *localLog) PublishAfter(room, writer, key string, payload []byte, writerLast uint64, done func(uint64, bool, error)) {
	if res := lg.place(room, writer, key, payload, writerLast, false, done); res.err != nil {
		done(0, false, res.err)
	}
}

// place implements placer. It blocks only on a store read (the key of a
// Send that is not fresh) and on the store's full queue (back-pressure).
func (lg *localLog) place(room, writer, key string, payload []byte, writerLast uint64, fresh bool, done func(uint64, bool, error)) published {
	lr := lg.acquire(room)
	lr.seqMu.Lock()
	defer lr.seqMu.Unlock()
	res, e := lg.decide(lr, writer, key, writerLast, fresh, done)
	if e == nil {
		lg.release(lr)
		return res
	}
	e.payload = payload
	lr.next = e.seq
	if writer != "" {
		lr.writers[writer] = writerEntry{seq: e.seq, key: key}
	}
	lr.mu.Lock()
	if key != "" {
		lr.pending[key] = e
	}
	lr.mu.Unlock()
	// lr's reference passes to the entry; commit gives it back.
	lg.st.Append(store.Record{Stream: lr.stream, Seq: e.seq, Key: key, UnixNanos: time.Now().UnixNano(), Payload: payload},
		func(err error) { lg.commit(lr, e, err) })
	return res
}

// decide answers a placement without storing anything (a resend, a refusal)
// or returns the new entry to store, at lr.next+1. A resend of an entry in
// flight gets done at that entry's commit; one of a committed entry at
// once. Caller holds lr.seqMu.
func (lg *localLog) decide(lr *localRoom, writer, key string, writerLast uint64, fresh bool, done func(uint64, bool, error)) (published, *localEntry) {
	if err := lg.load(lr); err != nil {
		return published{err: err}, nil
	}
	lr.mu.Lock()
	if lr.failed != nil {
		lr.mu.Unlock()
		return published{err: fmt.Errorf("room %q refuses messages after a failed commit (%w); it is reloaded once every member left", lr.name, lr.failed)}, nil
	}
	if e := lr.pending[key]; e != nil && key != "" {
		e.dups = append(e.dups, done)
		lr.mu.Unlock()
		return published{seq: e.seq, dup: true}, nil
	}
	lr.mu.Unlock()
	if !fresh && key != "" {
		seq, ok, err := lg.st.FindKey(lr.stream, key)
		if err != nil {
			return published{err: fmt.Errorf("room %q: look key %q up: %w", lr.name, key, err)}, nil
		}
		if ok {
			done(seq, true, nil)
			return published{seq: seq, dup: true}, nil
		}
	}
	if writer != "" {
		if last := lr.writers[writer].seq; last != writerLast {
			return published{err: fmt.Errorf("room %q: the writer's newest entry is at seq %d, not %d: %w", lr.name, last, writerLast, store.ErrConflict)}, nil
		}
	}
	if lr.next == math.MaxInt64 {
		return published{err: fmt.Errorf("room %q is full: seq %d is the last one", lr.name, lr.next)}, nil
	}
	seq := lr.next + 1
	return published{seq: seq}, &localEntry{seq: seq, key: key, done: done}
}

// commit is the store's callback for e. It runs on the store's writer
// goroutine (inside Append with the memory store), one entry at a time in
// seq order: under lr.mu it advances the committed head and feeds the
// followers; outside it, it calls e's done and its resends' (they may
// release the service's room, which stops a feed: that takes lr.mu).
func (lg *localLog) commit(lr *localRoom, e *localEntry, err error) {
	lr.mu.Lock()
	if lr.pending[e.key] == e {
		delete(lr.pending, e.key)
	}
	if err == nil && lr.failed != nil {
		err = fmt.Errorf("an earlier entry of room %q failed to commit: %w", lr.name, lr.failed)
	}
	if err != nil {
		if lr.failed == nil {
			lr.failed = err
		}
	} else {
		lr.committed = e.seq
		for _, f := range lr.feeds {
			if e.seq > f.after {
				f.fn(e.seq, e.payload)
			}
		}
	}
	dups := e.dups
	lr.mu.Unlock()
	if err != nil {
		e.done(0, false, err)
	} else {
		e.done(e.seq, false, nil)
	}
	for _, d := range dups {
		if err != nil {
			d(0, false, err)
		} else {
			d(e.seq, true, nil)
		}
	}
	lg.release(lr)
}
