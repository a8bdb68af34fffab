// Package ratelimit keeps one token bucket per key (a user id), shared by all
// of that key's streams. A key whose last stream ends keeps its bucket until
// the bucket has refilled, so reconnecting does not buy a fresh burst.
package ratelimit

import (
	"sync"

	"golang.org/x/time/rate"
)

// Limiter hands out shared token buckets by key. Safe for concurrent use; no
// method blocks beyond a short mutex.
type Limiter struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep int // len(buckets) after the last sweep of idle buckets
}

type bucket struct {
	lim  *rate.Limiter
	refs int
}

// New returns a Limiter allowing perSecond events with bursts of burst.
// perSecond <= 0 means unlimited.
func New(perSecond float64, burst int) *Limiter {
	l := rate.Limit(perSecond)
	if perSecond <= 0 {
		l = rate.Inf
	}
	if burst < 1 {
		burst = 1
	}
	return &Limiter{limit: l, burst: burst, buckets: map[string]*bucket{}}
}

// Acquire returns key's bucket, creating it; the caller must Release(key) once
// when its stream ends.
func (l *Limiter) Acquire(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.refs++
	l.sweep()
	return b.lim
}

// Release drops one reference to key's bucket. The bucket is forgotten once
// no stream holds it and it has refilled to its burst; until then a new
// stream of the same key gets the same, partly spent bucket. Memory is
// bounded by the keys with streams plus those released within one refill
// time (burst / rate).
func (l *Limiter) Release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		return
	}
	b.refs--
	if b.refs <= 0 && l.full(b) {
		delete(l.buckets, key)
	}
	l.sweep()
}

// full reports whether b has refilled to its burst.
func (l *Limiter) full(b *bucket) bool {
	return l.limit == rate.Inf || b.lim.Tokens() >= float64(l.burst)
}

// sweep forgets idle, refilled buckets once the table has doubled since the
// last sweep (amortised O(1) per call). Called with mu held.
func (l *Limiter) sweep() {
	if len(l.buckets) < 2*l.lastSweep+64 {
		return
	}
	for k, b := range l.buckets {
		if b.refs <= 0 && l.full(b) {
			delete(l.buckets, k)
		}
	}
	l.lastSweep = len(l.buckets)
}

// Keys returns how many keys currently hold a bucket (for metrics and tests).
func (l *Limiter) Keys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
