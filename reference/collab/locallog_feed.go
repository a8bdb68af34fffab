package collab

import (
	"errors"
	"fmt"
	"sync"

	"github.com/bidikit/bidikit/reference/store"
)

// Follow implements SharedLog: entries committed after after, in order, on
// one goroutine, until stop; stop does not wait for a running fn. Entries
// the store committed before Follow are read back from the store first.
func (l *localLog) Follow(doc string, after uint64, fn func(seq uint64, payload []byte), onErr func(error)) (func(), error) {
	f := &logFeed{next: after + 1, wake: make(chan struct{}, 1), stopC: make(chan struct{})}
	ld, err := l.lockDoc(doc)
	if err != nil {
		return nil, err
	}
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("follow document %q: %w", doc, store.ErrClosed)
	}
	ld.feeds[f] = struct{}{}
	catchUp := ld.committed
	l.feeds.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.feeds.Done()
		defer l.unfollow(doc, ld, f)
		f.run(l, doc, catchUp, fn, onErr)
	}()
	return f.stop, nil
}

func (l *localLog) unfollow(doc string, ld *logDoc, f *logFeed) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(ld.feeds, f)
	l.forgetIdle(doc, ld)
}

// close stops every feed and waits for their goroutines; appends fail
// afterwards. The store stays open (its owner closes it).
func (l *localLog) close() {
	l.mu.Lock()
	l.closed = true
	for _, ld := range l.docs {
		for f := range ld.feeds {
			f.stop()
		}
	}
	l.mu.Unlock()
	l.feeds.Wait()
}

// logFeed is one Follow of a localLog document. Its goroutine (run) owns
// next; mu guards buf, which the store's callbacks fill (bounded by the
// appends in flight, which the document bounds).
type logFeed struct {
	next  uint64
	wake  chan struct{}
	stopC chan struct{}
	once  sync.Once

	mu  sync.Mutex
	buf []feedEntry
}

type feedEntry struct {
	seq     uint64
	payload []byte
}

func (f *logFeed) stop() { f.once.Do(func() { close(f.stopC) }) }

func (f *logFeed) stopped() bool {
	select {
	case <-f.stopC:
		return true
	default:
		return false
	}
}

// push queues a committed entry and wakes the goroutine; never blocks.
func (f *logFeed) push(seq uint64, payload []byte) {
	f.mu.Lock()
	f.buf = append(f.buf, feedEntry{seq, payload})
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

var errFeedStopped = errors.New("feed stopped")

// run delivers what the store committed up to catchUp, then what the
// callbacks push, skipping seqs already delivered.
func (f *logFeed) run(l *localLog, doc string, catchUp uint64, fn func(uint64, []byte), onErr func(error)) {
	if catchUp >= f.next {
		err := l.st.Range(docStream(doc), f.next, catchUp, func(r store.Record) error {
			if f.stopped() {
				return errFeedStopped
			}
			fn(r.Seq, r.Payload)
			f.next = r.Seq + 1
			return nil
		})
		if err != nil && !errors.Is(err, errFeedStopped) && onErr != nil {
			onErr(fmt.Errorf("document %q: reading versions %d..%d back: %w", doc, f.next, catchUp, err))
		}
	}
	for {
		select {
		case <-f.stopC:
			return
		case <-f.wake:
		}
		f.mu.Lock()
		batch := f.buf
		f.buf = nil
		f.mu.Unlock()
		for _, e := range batch {
			if f.stopped() {
				return
			}
			if e.seq < f.next {
				continue
			}
			fn(e.seq, e.payload)
			f.next = e.seq + 1
		}
	}
}
