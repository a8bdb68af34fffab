package engine

import (
	"sync"
	"time"

	"github.com/bidikit/bidikit/harness/event"
)

// batchSize is how many events a client buffers before handing them over.
const batchSize = 128

// batchPool recycles event batches between emitters and the dispatcher.
var batchPool = sync.Pool{New: func() any { b := make([]event.Event, 0, batchSize); return &b }}

func getBatch() []event.Event { return (*(batchPool.Get().(*[]event.Event)))[:0] }

func putBatch(b []event.Event) {
	if cap(b) != batchSize {
		return
	}
	b = b[:0]
	batchPool.Put(&b)
}

// emitter buffers one client's events and hands full batches to the
// dispatcher's channel. The send and receive loops of the client share it, so
// a client's events keep their causal order (a Send is buffered before the
// message is written, hence before its Ack). mu guards buf; the channel send
// happens outside the lock and blocks when the dispatcher is behind
// (backpressure instead of unbounded memory).
type emitter struct {
	out chan<- []event.Event
	// lag, when set, hears how long a hand-over waited for the dispatcher.
	lag *lagMax

	mu  sync.Mutex
	buf []event.Event
}

// emit buffers e and hands the batch over when it is full.
func (em *emitter) emit(e *event.Event) {
	em.mu.Lock()
	if em.buf == nil {
		em.buf = getBatch()
	}
	em.buf = append(em.buf, *e)
	var full []event.Event
	if len(em.buf) >= batchSize {
		full, em.buf = em.buf, nil
	}
	em.mu.Unlock()
	if full != nil {
		em.handOver(full)
	}
}

// handOver sends b to the dispatcher, noting how long it had to wait.
func (em *emitter) handOver(b []event.Event) {
	select {
	case em.out <- b:
		return
	default:
	}
	t0 := time.Now()
	em.out <- b
	if em.lag != nil {
		em.lag.note(time.Since(t0))
	}
}

// flush hands over whatever is buffered.
func (em *emitter) flush() {
	em.mu.Lock()
	b := em.buf
	em.buf = nil
	em.mu.Unlock()
	if len(b) > 0 {
		em.out <- b // the flusher's wait, not a client's: not noted
	} else if b != nil {
		putBatch(b)
	}
}
