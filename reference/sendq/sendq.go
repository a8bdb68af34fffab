// Package sendq is one subscriber's bounded outbound queue. Broadcasters Push
// without ever blocking; the subscriber's single writer goroutine drains it in
// batches with Pop. When a push would exceed the bound (messages or bytes) the
// queue closes itself with ErrOverflow: the stream owning it ends with
// RESOURCE_EXHAUSTED ("slow consumer") and may resume from its last position.
package sendq

import (
	"context"
	"errors"
	"sync"
)

// ErrOverflow is returned by Pop once a Push found the queue full.
var ErrOverflow = errors.New("send queue overflow: subscriber too slow")

// ErrClosed is returned by Pop after Close.
var ErrClosed = errors.New("send queue closed")

// Queue is a bounded FIFO of T. Push is called by any number of producers;
// Pop by exactly one consumer (the stream's writer), which owns the queue.
type Queue[T any] struct {
	maxItems int
	maxBytes int

	mu    sync.Mutex
	items []T
	sizes []int
	head  int
	bytes int
	err   error // ErrOverflow or ErrClosed once the queue is finished
	wake  chan struct{}
}

// New returns a queue holding at most maxItems items and maxBytes bytes
// (sizes as given to Push). Values < 1 mean 1.
func New[T any](maxItems, maxBytes int) *Queue[T] {
	if maxItems < 1 {
		maxItems = 1
	}
	if maxBytes < 1 {
		maxBytes = 1
	}
	return &Queue[T]{maxItems: maxItems, maxBytes: maxBytes, wake: make(chan struct{}, 1)}
}

// Push appends v (size bytes) and returns true, or returns false without
// blocking when the queue is finished or full; a full queue becomes finished
// with ErrOverflow, so the consumer sees the overflow on its next Pop.
func (q *Queue[T]) Push(v T, size int) bool {
	q.mu.Lock()
	if q.err != nil {
		q.mu.Unlock()
		return false
	}
	n := len(q.items) - q.head
	if n+1 > q.maxItems || q.bytes+size > q.maxBytes {
		q.err = ErrOverflow
		q.mu.Unlock()
		q.signal()
		return false
	}
	q.items = append(q.items, v)
	q.sizes = append(q.sizes, size)
	q.bytes += size
	q.mu.Unlock()
	q.signal()
	return true
}

// Replace empties the queue and puts v in it: for state where only the newest
// value matters (a game snapshot for a slow reader). It never overflows.
func (q *Queue[T]) Replace(v T, size int) bool {
	q.mu.Lock()
	if q.err != nil {
		q.mu.Unlock()
		return false
	}
	clear(q.items)
	q.items = append(q.items[:0], v)
	q.sizes = append(q.sizes[:0], size)
	q.head = 0
	q.bytes = size
	q.mu.Unlock()
	q.signal()
	return true
}

func (q *Queue[T]) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Pop blocks until items are queued, the queue is finished or ctx is done, and
// then appends every queued item to buf (a batch) and returns it. Items queued
// before an overflow are still delivered; the error follows once they are.
func (q *Queue[T]) Pop(ctx context.Context, buf []T) ([]T, error) {
	for {
		q.mu.Lock()
		if n := len(q.items) - q.head; n > 0 {
			buf = append(buf, q.items[q.head:]...)
			clear(q.items)
			q.items = q.items[:0]
			q.sizes = q.sizes[:0]
			q.head = 0
			q.bytes = 0
			q.mu.Unlock()
			return buf, nil
		}
		err := q.err
		q.mu.Unlock()
		if err != nil {
			return buf, err
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return buf, ctx.Err()
		}
	}
}

// Close finishes the queue: Push fails from now on and Pop returns ErrClosed
// once the queued items are taken. Safe to call more than once.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	if q.err == nil {
		q.err = ErrClosed
	}
	q.mu.Unlock()
	q.signal()
}

// Len returns the number of queued items and their total size.
func (q *Queue[T]) Len() (items, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head, q.bytes
}
