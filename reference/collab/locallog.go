package collab

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bidikit/bidikit/reference/store"
)

// localLog is the document log of a single server instance (New): each
// document's log is the store.Store stream "collab/<document>", and this
// instance is its only writer. It gives the document code the same log as
// JetStream does in cluster mode (NewShared), so documents run one way.
//
// Append assigns seqs itself: it accepts an entry when expectLast is the
// document's tail (the last seq it accepted, committed or not) and hands it
// to the store at once, so a document may have many appends in flight and
// SQLite commits them in batches. Follow delivers an entry only once the
// store reported it committed, in seq order: nothing is published or
// acknowledged before it is durable. Snapshots let a document load without
// replaying its whole log.
//
// Locking: appendMu serialises Appends (expectation check and store.Append),
// so the store sees each document's seqs in order; mu guards docs, closed
// and every logDoc. Store callbacks take mu only (a memory store calls them
// inside store.Append, with appendMu held). Follow callbacks run on their
// feed's goroutine with no lock held. The store belongs to the caller.
type localLog struct {
	st store.Store

	appendMu sync.Mutex
	mu       sync.Mutex
	docs     map[string]*logDoc
	closed   bool
	feeds    sync.WaitGroup // running Follow goroutines; close waits for them
}

// logDoc is one document's log while it is followed or has appends in the
// store; idle, it is forgotten and read again from the store. Guarded by
// localLog.mu.
type logDoc struct {
	tail      uint64            // the last seq Append accepted (committed or not)
	committed uint64            // the last seq the store committed
	inStore   int               // appends handed to the store whose callback has not run
	keys      map[string]uint64 // de-dup keys of appends not committed yet, and of the last recentKeys committed
	recent    []string          // ring of the committed keys in keys, oldest at next
	next      int
	broken    error // set when the store failed an append: every later one fails with it
	feeds     map[*logFeed]struct{}
}

// recentKeys is how many committed keys a followed document's log keeps for
// de-duplication; older ones (and those of earlier runs) are Lookup's.
const recentKeys = 256

// logFailure is the error of a document's append once its store failed one:
// the entries after a lost one cannot be delivered in order, so the
// document must be loaded again (it is, once its appends have drained).
type logFailure struct {
	seq uint64
	err error
}

func (e *logFailure) Error() string {
	return fmt.Sprintf("storing version %d failed: %v", e.seq, e.err)
}
func (e *logFailure) Unwrap() error { return e.err }

func newLocalLog(st store.Store) *localLog {
	return &localLog{st: st, docs: map[string]*logDoc{}}
}

func docStream(doc string) string { return "collab/" + doc }

// doc returns doc's state, reading its head from the store when it is not
// held. Called without mu.
func (l *localLog) doc(doc string) (*logDoc, error) {
	l.mu.Lock()
	ld := l.docs[doc]
	l.mu.Unlock()
	if ld != nil {
		return ld, nil
	}
	// Nothing of doc is in flight (it would be held), so the store's head
	// is its tail; a concurrent first use reads the same.
	h, err := l.st.Head(docStream(doc))
	if err != nil {
		return nil, fmt.Errorf("document %q: reading the log head: %w", doc, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ld = l.docs[doc]; ld == nil {
		ld = &logDoc{tail: h.Last, committed: h.Last, keys: map[string]uint64{}, feeds: map[*logFeed]struct{}{}}
		l.docs[doc] = ld
	}
	return ld, nil
}

// lockDoc returns doc's current state with mu held (a state forgotten
// between doc and the lock is read again).
func (l *localLog) lockDoc(doc string) (*logDoc, error) {
	for tries := 0; ; tries++ {
		ld, err := l.doc(doc)
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.docs[doc] == ld {
			return ld, nil
		}
		l.mu.Unlock()
		if tries == 100 {
			return nil, fmt.Errorf("document %q: its log state keeps being dropped", doc)
		}
	}
}

// forgetIdle drops ld when nothing follows it and nothing of it is in the
// store's queue. Called with mu held.
func (l *localLog) forgetIdle(doc string, ld *logDoc) {
	if ld.inStore == 0 && len(ld.feeds) == 0 && l.docs[doc] == ld {
		delete(l.docs, doc)
	}
}

// Head implements SharedLog: what the store has committed, once every
// append accepted for doc has settled (committed or failed), so the head is
// the tail a document loading now appends after. It waits up to ctx.
func (l *localLog) Head(ctx context.Context, doc string) (store.Head, error) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		l.mu.Lock()
		ld := l.docs[doc]
		busy := ld != nil && ld.inStore > 0
		l.mu.Unlock()
		if !busy {
			break
		}
		select {
		case <-ctx.Done():
			return store.Head{}, fmt.Errorf("document %q: waiting for its appends in flight to settle: %w", doc, ctx.Err())
		case <-t.C:
		}
	}
	h, err := l.st.Head(docStream(doc))
	if err != nil {
		return store.Head{}, fmt.Errorf("document %q: reading the log head: %w", doc, err)
	}
	return h, nil
}

// Range implements SharedLog over the store's committed records.
func (l *localLog) Range(ctx context.Context, doc string, from, to uint64, fn func(seq uint64, payload []byte) error) error {
	return l.st.Range(docStream(doc), from, to, func(r store.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(r.Seq, r.Payload)
	})
}

// Lookup implements SharedLog: the committed record stored under key.
func (l *localLog) Lookup(_ context.Context, doc, key string) (uint64, bool, error) {
	return l.st.FindKey(docStream(doc), key)
}

// Append implements SharedLog. A key appended through this log that is
// still in the store's queue or among the last recentKeys committed is
// answered as a duplicate with its seq wherever the log ends; an older key
// is not (asking the store on every append would put a read on every
// submit's path): the document looks every possible resend up (Lookup)
// before appending it. Otherwise the entry is accepted only when the log's
// tail is expectLast. done runs on the store's writer goroutine (or inside
// Append for a memory store).
func (l *localLog) Append(doc, key string, payload []byte, expectLast uint64, done func(seq uint64, duplicate bool, err error)) {
	stream := docStream(doc)
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	ld, err := l.lockDoc(doc)
	if err != nil {
		done(0, false, err)
		return
	}
	if seq, ok, err := l.pendingKey(ld, key); err != nil || ok {
		l.mu.Unlock()
		done(seq, ok, err)
		return
	}
	if ld.tail != expectLast {
		tail := ld.tail
		l.mu.Unlock()
		done(0, false, fmt.Errorf("document %q: the log ends at version %d, not %d: %w", doc, tail, expectLast, store.ErrConflict))
		return
	}
	ld.tail++
	seq := ld.tail
	if key != "" {
		ld.keys[key] = seq
	}
	ld.inStore++
	l.mu.Unlock()
	l.st.Append(store.Record{Stream: stream, Seq: seq, Key: key, UnixNanos: time.Now().UnixNano(), Payload: payload},
		func(err error) { l.stored(doc, ld, seq, key, payload, err, done) })
}

// pendingKey answers an Append whose key is known (see Append), or refuses
// it when the log is closed or broken. Called with mu held.
func (l *localLog) pendingKey(ld *logDoc, key string) (uint64, bool, error) {
	switch {
	case l.closed:
		return 0, false, &logFailure{seq: ld.tail + 1, err: store.ErrClosed}
	case ld.broken != nil:
		return 0, false, ld.broken
	}
	seq, ok := ld.keys[key]
	return seq, ok && key != "", nil
}

// stored is the store's callback for the append at seq (in Append order):
// the entry becomes committed and goes to the feeds, then done hears of it.
// After a failure every later entry fails too, stored or not: the feeds
// cannot skip the lost one.
func (l *localLog) stored(doc string, ld *logDoc, seq uint64, key string, payload []byte, err error, done func(uint64, bool, error)) {
	l.mu.Lock()
	ld.inStore--
	switch {
	case ld.broken != nil:
		err = ld.broken
	case err != nil:
		ld.broken = &logFailure{seq: seq, err: err}
		err = ld.broken
	case seq != ld.committed+1:
		ld.broken = &logFailure{seq: seq, err: fmt.Errorf("the store committed version %d after %d", seq, ld.committed)}
		err = ld.broken
	default:
		ld.committed = seq
		for f := range ld.feeds {
			f.push(seq, payload)
		}
	}
	ld.keep(key, seq, err == nil)
	l.forgetIdle(doc, ld)
	l.mu.Unlock()
	if err != nil {
		done(0, false, err)
		return
	}
	done(seq, false, nil)
}

// keep moves key, no longer in the store's queue, to the ring of recent
// committed keys (stored) or forgets it. Called with localLog.mu held.
func (ld *logDoc) keep(key string, seq uint64, stored bool) {
	if key == "" || ld.keys[key] != seq {
		return
	}
	if !stored {
		delete(ld.keys, key)
		return
	}
	if len(ld.recent) < recentKeys {
		ld.recent = append(ld.recent, key)
		return
	}
	if old := ld.recent[ld.next]; old != key {
		delete(ld.keys, old)
	}
	ld.recent[ld.next] = key
	ld.next = (ld.next + 1) % recentKeys
}

// Snapshot implements docLog: the newest text the store holds for doc.
func (l *localLog) Snapshot(_ context.Context, doc string) (uint64, string, bool, error) {
	s, ok, err := l.st.LatestSnapshot(docStream(doc))
	if err != nil {
		return 0, "", false, fmt.Errorf("document %q: reading the snapshot: %w", doc, err)
	}
	return s.Seq, string(s.Data), ok, nil
}

// PutSnapshot implements docLog: text is doc's text at seq, a committed
// version.
func (l *localLog) PutSnapshot(doc string, seq uint64, text string, done func(error)) {
	l.st.PutSnapshot(store.Snapshot{Stream: docStream(doc), Seq: seq, Data: []byte(text)}, done)
}
