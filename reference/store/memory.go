package store

import (
	"sort"
	"sync"
)

// Memory is a Store held in process memory. Each stream keeps at most
// Retain records (the oldest are dropped, and Head.Oldest says so). Append
// commits immediately; callbacks are still called in Append order.
type Memory struct {
	retain int

	mu      sync.Mutex // guards streams and closed; callbacks run outside it
	streams map[string]*memStream
	closed  bool
	cbMu    sync.Mutex // serialises callbacks so they run in Append order
}

type memStream struct {
	// recs[start:] are the retained records, oldest first; dropped records
	// before start are compacted away in bulk so Append stays O(1) amortised.
	recs  []Record
	start int
	keys  map[string]uint64
	snap  *Snapshot
}

// NewMemory returns a Memory store retaining retain records per stream
// (retain < 1 means 10,000).
func NewMemory(retain int) *Memory {
	if retain < 1 {
		retain = 10_000
	}
	return &Memory{retain: retain, streams: map[string]*memStream{}}
}

func (m *Memory) stream(name string) *memStream {
	s := m.streams[name]
	if s == nil {
		s = &memStream{keys: map[string]uint64{}}
		m.streams[name] = s
	}
	return s
}

// Append implements Store.
func (m *Memory) Append(rec Record, done func(error)) {
	m.cbMu.Lock()
	defer m.cbMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		done(ErrClosed)
		return
	}
	s := m.stream(rec.Stream)
	rec.Payload = append([]byte(nil), rec.Payload...)
	s.recs = append(s.recs, rec)
	if rec.Key != "" {
		s.keys[rec.Key] = rec.Seq
	}
	for len(s.recs)-s.start > m.retain {
		r := &s.recs[s.start]
		if r.Key != "" && s.keys[r.Key] == r.Seq {
			delete(s.keys, r.Key)
		}
		*r = Record{}
		s.start++
	}
	if s.start > 1024 && s.start > len(s.recs)/2 {
		s.recs = append(s.recs[:0:0], s.recs[s.start:]...)
		s.start = 0
	}
	m.mu.Unlock()
	done(nil)
}

// Head implements Store.
func (m *Memory) Head(stream string) (Head, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[stream]
	if s == nil || len(s.recs) == s.start {
		if s != nil && s.snap != nil {
			return Head{Last: s.snap.Seq}, nil
		}
		return Head{}, nil
	}
	return Head{Last: s.recs[len(s.recs)-1].Seq, Oldest: s.recs[s.start].Seq}, nil
}

// Range implements Store.
func (m *Memory) Range(stream string, from, to uint64, fn func(Record) error) error {
	m.mu.Lock()
	s := m.streams[stream]
	var out []Record
	if s != nil {
		// Search rather than index by seq - first: a service that appends
		// seqs with gaps or out of order must not make Range panic.
		recs := s.recs[s.start:]
		lo := sort.Search(len(recs), func(i int) bool { return recs[i].Seq >= from })
		hi := sort.Search(len(recs), func(i int) bool { return recs[i].Seq > to })
		if lo < hi {
			out = append(out, recs[lo:hi]...)
		}
	}
	m.mu.Unlock()
	for _, r := range out {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// FindKey implements Store.
func (m *Memory) FindKey(stream, key string) (uint64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.streams[stream]; s != nil {
		seq, ok := s.keys[key]
		return seq, ok, nil
	}
	return 0, false, nil
}

// PutSnapshot implements Store.
func (m *Memory) PutSnapshot(snap Snapshot, done func(error)) {
	m.cbMu.Lock()
	defer m.cbMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		done(ErrClosed)
		return
	}
	snap.Data = append([]byte(nil), snap.Data...)
	m.stream(snap.Stream).snap = &snap
	m.mu.Unlock()
	done(nil)
}

// LatestSnapshot implements Store.
func (m *Memory) LatestSnapshot(stream string) (Snapshot, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.streams[stream]; s != nil && s.snap != nil {
		return *s.snap, true, nil
	}
	return Snapshot{}, false, nil
}

// Durable implements Store: memory is not.
func (m *Memory) Durable() bool { return false }

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}
