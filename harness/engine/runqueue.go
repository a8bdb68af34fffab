package engine

import (
	"math"
	"runtime/metrics"
	"time"
)

// schedLatencies is the runtime's histogram of how long goroutines waited
// runnable before they ran.
const schedLatencies = "/sched/latencies:seconds"

// runQueueLag reads how long the process's goroutines waited to run, window
// by window: a probe that sleeps on a timer is woken ahead of the run queue,
// so when thousands of goroutines are runnable (a 10,000-client teardown
// on two cores, with the server beside it) it woke on time while a client's
// reader waited seconds to read the status that ended its stream. Owned by
// the lag probe's goroutine.
type runQueueLag struct {
	sample []metrics.Sample
	prev   []uint64 // the histogram's counts at the last window
}

func newRunQueueLag() *runQueueLag {
	q := &runQueueLag{sample: []metrics.Sample{{Name: schedLatencies}}}
	q.window()
	return q
}

// window returns the 99th percentile of the waits since the last call (0
// when none was recorded or the runtime does not export the histogram).
func (q *runQueueLag) window() time.Duration {
	metrics.Read(q.sample)
	if q.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := q.sample[0].Value.Float64Histogram()
	d := percentile(h.Buckets, h.Counts, q.prev, 0.99)
	q.prev = append(q.prev[:0], h.Counts...)
	return d
}

// percentile returns the upper bound of the bucket holding the p-th
// fraction of the counts recorded since prev (cumulative counts from the
// same histogram; nil = from zero): buckets[i], buckets[i+1] bound counts[i].
// An infinite bound gives the bucket's lower bound.
func percentile(buckets []float64, counts, prev []uint64, p float64) time.Duration {
	var total uint64
	delta := make([]uint64, len(counts))
	for i, c := range counts {
		if i < len(prev) && prev[i] <= c {
			c -= prev[i]
		}
		delta[i] = c
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p * float64(total)))
	var seen uint64
	for i, c := range delta {
		if seen += c; seen >= rank {
			bound := buckets[i+1]
			if math.IsInf(bound, 1) {
				bound = buckets[i]
			}
			return time.Duration(max(bound, 0) * float64(time.Second))
		}
	}
	return 0
}
