package game

import (
	"encoding/binary"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	"github.com/bidikit/bidikit/reference/sendq"
)

// frame is one encoded TickUpdate of a match at a tick without the
// per-recipient fields (your_last_input, your_last_input_sent_unix_nanos,
// dropped_inputs). The match loop builds it once and every recipient's writer
// shares the bytes; it is immutable once built.
type frame struct {
	b    []byte
	tick uint64
	full bool
}

// personal is what differs per recipient in a TickUpdate.
type personal struct {
	lastInput     uint64
	lastInputSent int64
	dropped       uint64
}

// item is one entry of a stream's outbound queue: either an event (Joined,
// Left, Error, Kick) or a tick update (a shared frame plus personal fields).
// An event with end != nil is the stream's last: the writer sends it and ends
// the stream with end.
type item struct {
	ev  *gamev1.ServerEvent
	end error

	f   *frame
	per personal
}

func (it *item) size() int {
	if it.f != nil {
		return len(it.f.b) + 32
	}
	return 128
}

// appendEncoded appends the wire encoding of the ServerEvent{tick: ...} that
// it (a tick item) stands for: the shared frame followed by the personal
// fields. Protobuf merges concatenated encodings of a message, so the result
// decodes as one TickUpdate.
func (it *item) appendEncoded(b []byte) []byte {
	var tail [3 * (1 + binary.MaxVarintLen64)]byte
	t := tail[:0]
	if it.per.lastInput != 0 {
		t = protowire.AppendTag(t, 6, protowire.VarintType)
		t = protowire.AppendVarint(t, it.per.lastInput)
	}
	if it.per.lastInputSent != 0 {
		t = protowire.AppendTag(t, 7, protowire.VarintType)
		t = protowire.AppendVarint(t, uint64(it.per.lastInputSent))
	}
	if it.per.dropped != 0 {
		t = protowire.AppendTag(t, 8, protowire.VarintType)
		t = protowire.AppendVarint(t, it.per.dropped)
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType) // ServerEvent.tick
	b = protowire.AppendVarint(b, uint64(len(it.f.b)+len(t)))
	b = append(b, it.f.b...)
	return append(b, t...)
}

// outbox is one stream's outbound queue: a sendq.Queue drained by the
// stream's writer goroutine (the only consumer), fed by the match loop (tick
// updates, Joined, Left, input errors, kicks), the stream's reader (errors
// answering client events) and Drain (shutdown kicks).
//
// Tick updates use "newest state only": when a tick arrives while anything is
// still queued, the recipient is behind, so it is sent a full update instead
// of a delta, and when everything queued is tick updates the queue is
// Replaced (stale updates are discarded, never a backlog). Events are never
// discarded: a Replace waits until every event pushed has been popped.
type outbox struct {
	q *sendq.Queue[item]

	mu       sync.Mutex // serialises producers; guards the counters below
	evPushed uint64     // events pushed, ever
	evPopped uint64     // events the writer popped, ever (<= the true count while it accounts)
	maxTicks int        // unsent tick updates tolerated before a resync (>= 1)
	onResync func()
}

// newOutbox returns an outbox bounded by items and bytes that tolerates
// maxTicks unsent tick updates before resynchronising the reader.
func newOutbox(items, bytes, maxTicks int, onResync func()) *outbox {
	return newOutboxOn(sendq.New[item](items, bytes), maxTicks, onResync)
}

// newOutboxOn returns an outbox over q (a stream's queue).
func newOutboxOn(q *sendq.Queue[item], maxTicks int, onResync func()) *outbox {
	return &outbox{q: q, maxTicks: max(1, maxTicks), onResync: onResync}
}

// pushEvent queues ev (ending the stream with end after it when end != nil).
// It never blocks; false means the queue is finished (overflowed or closed).
func (o *outbox) pushEvent(ev *gamev1.ServerEvent, end error) bool {
	it := item{ev: ev, end: end}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.q.Push(it, it.size()) {
		return false
	}
	o.evPushed++
	return true
}

// pushEventIfIdle queues ev only when no earlier event is still unsent: used
// for best-effort input errors so that a player cannot make the server queue
// more of them than the player reads.
func (o *outbox) pushEventIfIdle(ev *gamev1.ServerEvent) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.evPushed != o.evPopped {
		return false
	}
	it := item{ev: ev}
	if !o.q.Push(it, it.size()) {
		return false
	}
	o.evPushed++
	return true
}

// pushTick queues a tick update. While fewer than maxTicks tick updates are
// unsent it queues delta (deltas behind deltas are still correct). A reader
// further behind is resynchronised: it gets the full frame that full()
// returns (built lazily, once per tick, by the match loop that calls
// pushTick), replacing the queue when that holds tick updates only, queued
// behind the events otherwise. It never blocks.
func (o *outbox) pushTick(delta *frame, full func() *frame, per personal) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, _ := o.q.Len()
	// Unsent events are over-counted while the writer accounts a batch, so
	// ticks may be under-counted by that much: at worst one more delta.
	if ticks := n - int(o.evPushed-o.evPopped); ticks < o.maxTicks {
		it := item{f: delta, per: per}
		o.q.Push(it, it.size())
		return
	}
	it := item{f: full(), per: per}
	if o.evPushed == o.evPopped {
		if o.q.Replace(it, it.size()) && o.onResync != nil {
			o.onResync()
		}
		return
	}
	o.q.Push(it, it.size())
}

// pushFull queues the full frame f (a join's first update) without touching
// what is queued.
func (o *outbox) pushFull(f *frame, per personal) {
	it := item{f: f, per: per}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.q.Push(it, it.size())
}

// popped records that the writer took batch off the queue.
func (o *outbox) popped(batch []item) {
	var n uint64
	for i := range batch {
		if batch[i].ev != nil {
			n++
		}
	}
	if n == 0 {
		return
	}
	o.mu.Lock()
	o.evPopped += n
	o.mu.Unlock()
}
