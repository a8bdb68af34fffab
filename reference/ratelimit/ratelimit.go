// Package ratelimit keeps one token bucket per key (a user id), shared by all
// of that key's streams, and forgets a key when its last stream ends.
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

	mu      sync.Mutex
	buckets map[string]*bucket
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
// when its stream ends. Memory is bounded by the number of keys with streams.
func (l *Limiter) Acquire(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.refs++
	return b.lim
}

// Release drops one reference to key's bucket and forgets it at zero.
func (l *Limiter) Release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[key]; b != nil {
		b.refs--
		if b.refs <= 0 {
			delete(l.buckets, key)
		}
	}
}

// Keys returns how many keys currently hold a bucket (for metrics and tests).
func (l *Limiter) Keys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
