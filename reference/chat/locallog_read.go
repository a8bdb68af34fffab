package chat

import (
	"context"
	"fmt"
	"sync"

	"github.com/bidikit/bidikit/reference/store"
)

// Head implements SharedLog: Last is the committed head the feeds reached,
// Oldest the store's oldest retained record.
func (lg *localLog) Head(_ context.Context, room string) (store.Head, error) {
	lr := lg.acquire(room)
	defer lg.release(lr)
	lr.seqMu.Lock()
	err := lg.load(lr)
	lr.seqMu.Unlock()
	if err != nil {
		return store.Head{}, err
	}
	h, err := lg.st.Head(lr.stream)
	if err != nil {
		return store.Head{}, fmt.Errorf("room %q: read the head of %s: %w", room, lr.stream, err)
	}
	lr.mu.Lock()
	h.Last = lr.committed
	lr.mu.Unlock()
	if h.Oldest > h.Last {
		h.Oldest = 0
	}
	return h, nil
}

// Follow implements SharedLog. Entries committed after after but before
// Follow was called are read from the store first; then fn is called from
// the commit callbacks (the store's writer goroutine, or inside Append with
// the memory store), one at a time in seq order. The feed holds the room in
// memory until stop. onErr is not used: a local feed has no transport to
// lose.
func (lg *localLog) Follow(room string, after uint64, fn func(uint64, []byte), _ func(error)) (func(), error) {
	lr := lg.acquire(room)
	lr.seqMu.Lock()
	err := lg.load(lr)
	lr.seqMu.Unlock()
	if err != nil {
		lg.release(lr)
		return nil, err
	}
	f := &localFeed{after: after, fn: fn}
	lr.mu.Lock()
	if after < lr.committed {
		err = lg.st.Range(lr.stream, after+1, lr.committed, func(rec store.Record) error {
			fn(rec.Seq, rec.Payload)
			f.after = rec.Seq
			return nil
		})
		if err == nil && f.after < lr.committed {
			err = fmt.Errorf("the store retains seqs up to %d, want %d", f.after, lr.committed)
		}
	}
	if err != nil {
		lr.mu.Unlock()
		lg.release(lr)
		return nil, fmt.Errorf("follow room %q after seq %d: %w", room, after, err)
	}
	lr.feeds = append(lr.feeds, f)
	lr.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			lr.mu.Lock()
			for i, g := range lr.feeds {
				if g == f {
					lr.feeds = append(lr.feeds[:i], lr.feeds[i+1:]...)
					break
				}
			}
			lr.mu.Unlock()
			lg.release(lr)
		})
	}, nil
}

// Range implements SharedLog over the store's committed records.
func (lg *localLog) Range(ctx context.Context, room string, from, to uint64, fn func(uint64, []byte) error) error {
	return lg.st.Range(lg.prefix+room, from, to, func(rec store.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(rec.Seq, rec.Payload)
	})
}

// WriterLast implements SharedLog: writer's newest entry placed since the
// room was loaded (found false before the first; see localLog). An entry in
// flight is reported: its commit either succeeds or fails the room.
func (lg *localLog) WriterLast(_ context.Context, room, writer string) (uint64, []byte, bool, error) {
	lr := lg.acquire(room)
	defer lg.release(lr)
	lr.seqMu.Lock()
	err := lg.load(lr)
	w := lr.writers[writer]
	lr.seqMu.Unlock()
	if err != nil || w.seq == 0 {
		return 0, nil, false, err
	}
	lr.mu.Lock()
	if e := lr.pending[w.key]; e != nil && e.seq == w.seq {
		p := e.payload
		lr.mu.Unlock()
		return w.seq, p, true, nil
	}
	lr.mu.Unlock()
	var payload []byte
	err = lg.st.Range(lr.stream, w.seq, w.seq, func(rec store.Record) error { payload = rec.Payload; return nil })
	switch {
	case err != nil:
		return 0, nil, false, fmt.Errorf("room %q: read the writer's newest entry (seq %d): %w", room, w.seq, err)
	case payload == nil:
		return 0, nil, false, fmt.Errorf("room %q: the writer's newest entry (seq %d) is not retained", room, w.seq)
	}
	return w.seq, payload, true, nil
}

// WriterKey implements SharedLog by key alone: keys embed the sender, and
// the store keeps no sender_session, so a key stored by another session of
// the same sender is found too.
func (lg *localLog) WriterKey(_ context.Context, room, _, key string, upTo uint64) (uint64, bool, error) {
	lr := lg.acquire(room)
	defer lg.release(lr)
	lr.mu.Lock()
	e := lr.pending[key]
	lr.mu.Unlock()
	seq, ok := uint64(0), false
	if e != nil {
		seq, ok = e.seq, true
	} else {
		var err error
		if seq, ok, err = lg.st.FindKey(lr.stream, key); err != nil {
			return 0, false, fmt.Errorf("room %q: look key %q up: %w", room, key, err)
		}
	}
	if !ok || seq > upTo {
		return 0, false, nil
	}
	return seq, true, nil
}
