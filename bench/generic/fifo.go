package generic

import "sync/atomic"

// cacheLine pads fields written by different goroutines apart.
const cacheLine = 64

// sendTimes is an unbounded FIFO of int64 for exactly one producer and one
// consumer goroutine, without locks: the producer fills fixed-size segments
// and publishes how many values it has written with one atomic store; the
// consumer reads only values below the published count, which orders the
// writes (of the value and of a segment's next link) before its reads.
// A segment no longer referenced by either side is garbage. The two sides'
// fields sit on separate cache lines. One call's sender pushes the time
// each message's latency counts from; its receiver pops one per response.
type sendTimes struct {
	_ [cacheLine]byte
	// producer side; published is read by the consumer
	tail      *timeSeg
	wrote     int64
	published atomic.Int64
	_         [cacheLine - 24]byte
	// consumer side
	head *timeSeg
	read int64
	_    [cacheLine - 16]byte
}

const timeSegLen = 128

type timeSeg struct {
	v    [timeSegLen]int64
	next *timeSeg
}

// push appends v. Producer only.
func (q *sendTimes) push(v int64) {
	i := q.wrote % timeSegLen
	switch {
	case q.tail == nil:
		q.tail = &timeSeg{}
		q.head = q.tail // published below, before the consumer looks at head
	case i == 0:
		s := &timeSeg{}
		q.tail.next = s
		q.tail = s
	}
	q.tail.v[i] = v
	q.wrote++
	q.published.Store(q.wrote)
}

// pop removes the oldest value; false when none is published. Consumer
// only.
func (q *sendTimes) pop() (int64, bool) {
	if q.read >= q.published.Load() {
		return 0, false
	}
	i := q.read % timeSegLen
	if i == 0 && q.read > 0 {
		q.head = q.head.next
	}
	v := q.head.v[i]
	q.read++
	return v, true
}
