package generic

import (
	"sync"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/bidikit/bidikit/bench"
)

// sink is one shard of a round's latency histograms: a few workers flush
// their samples into it under its lock. Sharing a few histograms keeps a
// round's memory small (an HDR histogram of 1 µs to 1 h is ~180 KB) while
// the lock is taken once per sampleBatch samples.
type sink struct {
	mu                  sync.Mutex
	hist, fromSend, lag *hdrhistogram.Histogram
	_                   [cacheLine]byte
}

// maxSinks bounds a round's shards.
const maxSinks = 4

func newSinks(n int, paced bool) []*sink {
	out := make([]*sink, min(max(n, 1), maxSinks))
	for i := range out {
		out[i] = &sink{hist: bench.NewHistogram()}
		if paced {
			out[i].fromSend, out[i].lag = bench.NewHistogram(), bench.NewHistogram()
		}
	}
	return out
}

// sampleBatch is how many samples a buffer holds before it flushes.
const sampleBatch = 128

// samples buffers one goroutine's latency samples (ns) for one histogram
// of a sink; it is owned by that goroutine until flushed. A nil *samples
// drops what it is given.
type samples struct {
	v  [sampleBatch]int64
	n  int
	mu *sync.Mutex
	to *hdrhistogram.Histogram
}

func newSamples(s *sink, to *hdrhistogram.Histogram) *samples {
	if to == nil {
		return nil
	}
	return &samples{mu: &s.mu, to: to}
}

func (s *samples) add(ns int64) {
	if s == nil {
		return
	}
	s.v[s.n] = ns
	s.n++
	if s.n == sampleBatch {
		s.flush()
	}
}

// flush records the buffered samples in the sink's histogram, in µs (at
// least 1, at most the histogram's ceiling).
func (s *samples) flush() {
	if s == nil || s.n == 0 {
		return
	}
	s.mu.Lock()
	top := s.to.HighestTrackableValue()
	for _, ns := range s.v[:s.n] {
		_ = s.to.RecordValue(min(max(ns/1e3, 1), top))
	}
	s.mu.Unlock()
	s.n = 0
}
