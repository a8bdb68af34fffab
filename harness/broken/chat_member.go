package broken

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// reorderWait is how long ReorderSome holds a live message for the next
// one to overtake it before sending it alone.
const reorderWait = 100 * time.Millisecond

// member is one stream. out is its bounded queue: pushed to by the stream's
// reader and by publishers holding a room's lock, drained by the writer
// (the handler goroutine), closed by the reader once the client said
// goodbye and m is in no room. rooms is the reader's alone.
type member struct {
	user    string
	st      chatStream
	odd     bool // every second stream of the server
	direct  bool // BlockingBroadcast
	reorder bool // ReorderSome, on odd streams
	out     chan *chatv1.ServerEvent
	kicked  chan struct{} // closed once, when the server ends the stream (cut sets endErr first)
	endErr  error         // the stream's status once kicked is closed
	once    sync.Once
	sendMu  sync.Mutex // serialises direct sends (BlockingBroadcast)
	rooms   map[string]*room
	// pace and halfClosed: StartChatPacedReplay's (the writer paces a
	// replay and writes no message once the reader saw the client's EOF).
	pace       time.Duration
	halfClosed atomic.Bool
}

// push queues ev for the writer without ever waiting: a member whose queue
// is full is a slow consumer, ended with RESOURCE_EXHAUSTED, and gets
// nothing more (a kicked member never sees a later message after a hole).
func (m *member) push(ev *chatv1.ServerEvent) {
	if m.direct {
		// defect: BlockingBroadcast (sends at once, with the publisher's room lock held)
		m.sendMu.Lock()
		_ = m.st.Send(ev)
		m.sendMu.Unlock()
		return
	}
	if m.kickErr() != nil {
		return
	}
	select {
	case m.out <- ev:
	default:
		m.cut(status.Errorf(codes.ResourceExhausted, "slow consumer: more than %d events queued for this stream", queueLen))
	}
}

// cut ends the stream with err (the first cut wins); the writer returns it.
func (m *member) cut(err error) {
	m.once.Do(func() {
		m.endErr = err
		close(m.kicked)
	})
}

// kickErr is the stream's status once m was cut (RESOURCE_EXHAUSTED for a
// slow consumer, INVALID_ARGUMENT for an undecodable message), nil before.
func (m *member) kickErr() error {
	select {
	case <-m.kicked:
		return m.endErr
	default:
		return nil
	}
}

// write sends queued events until the queue is closed and empty (nil: the
// client said goodbye), the member is kicked, a Send fails or the stream's
// ctx ends. Messages queued back to back go out as one MessageBatch.
func (m *member) write(ctx context.Context) error {
	w := &writer{m: m, held: map[string]*chatv1.Message{}}
	var next *chatv1.ServerEvent // taken from the queue while batching, not sent yet
	for {
		// A kick wins over whatever is still queued, even over a closed
		// queue: select alone would pick among them at random.
		if err := m.kickErr(); err != nil {
			return err
		}
		ev := next
		next = nil
		if ev == nil {
			var ok bool
			select {
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			case <-m.kicked:
				return m.kickErr()
			case <-w.flushC:
				if err := w.flush(); err != nil {
					return err
				}
				continue
			case ev, ok = <-m.out:
				if !ok {
					return w.end()
				}
			}
		}
		if m.pace > 0 {
			if ev.GetMessage() != nil || ev.GetBatch() != nil {
				if m.halfClosed.Load() {
					continue // the client said it is done: nothing more is fed
				}
				if b := ev.GetBatch(); b != nil && len(b.Messages) > 0 && b.Messages[0].Replay {
					if err := m.pacedReplay(ctx, b.Messages); err != nil {
						return err
					}
					continue
				}
			}
		}
		msg := ev.GetMessage()
		if msg == nil {
			if err := w.flush(); err != nil {
				return err
			}
			if err := m.st.Send(ev); err != nil {
				return err
			}
			continue
		}
		batch, closed := []*chatv1.Message{msg}, false
	more:
		for len(batch) < maxBatch {
			select {
			case ev, ok := <-m.out:
				switch {
				case !ok:
					closed = true
					break more
				case ev.GetMessage() != nil:
					batch = append(batch, ev.GetMessage())
				default:
					next = ev
					break more
				}
			default:
				break more
			}
		}
		if err := w.send(batch); err != nil {
			return err
		}
		if closed {
			return w.end()
		}
	}
}

// pacedReplay sends a replay one message per m.pace, and stops once the
// client half-closed (StartChatPacedReplay).
func (m *member) pacedReplay(ctx context.Context, msgs []*chatv1.Message) error {
	for _, rm := range msgs {
		t := time.NewTimer(m.pace)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return status.FromContextError(ctx.Err()).Err()
		case <-m.kicked:
			t.Stop()
			return m.kickErr()
		}
		if m.halfClosed.Load() {
			return nil // the client said it is done: the rest of the replay is not owed
		}
		if err := m.st.Send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: rm}}); err != nil {
			return err
		}
	}
	return nil
}

// maxBatch bounds the messages of one MessageBatch.
const maxBatch = 64

// writer is the state of one stream's writer goroutine (its alone).
type writer struct {
	m *member
	// held is ReorderSome's: per room, a live message waiting for the next
	// one to overtake it; flushC fires reorderWait after the first hold.
	held   map[string]*chatv1.Message
	flushC <-chan time.Time
}

// send sends msgs, one Message or one MessageBatch.
func (w *writer) send(msgs []*chatv1.Message) error {
	if w.m.reorder {
		msgs = w.reorder(msgs)
	}
	switch len(msgs) {
	case 0:
		return nil
	case 1:
		return w.m.st.Send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: msgs[0]}})
	}
	return w.m.st.Send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Batch{Batch: &chatv1.MessageBatch{Messages: msgs}}})
}

// reorder swaps consecutive live messages of a room: each first one is
// held until the next arrives, which goes out before it.
func (w *writer) reorder(msgs []*chatv1.Message) []*chatv1.Message {
	out := make([]*chatv1.Message, 0, len(msgs)+len(w.held))
	for _, msg := range msgs {
		// defect: ReorderSome (the next live message of the room overtakes this one)
		if h := w.held[msg.Room]; h != nil {
			delete(w.held, msg.Room)
			out = append(out, msg, h)
			continue
		}
		w.held[msg.Room] = msg
		if w.flushC == nil {
			w.flushC = time.After(reorderWait)
		}
	}
	return out
}

// end is the stream's end once the queue is closed and drained: the kick's
// status, or nil after sending what ReorderSome still holds.
func (w *writer) end() error {
	if err := w.m.kickErr(); err != nil {
		return err
	}
	return w.flush()
}

// flush sends the messages ReorderSome still holds.
func (w *writer) flush() error {
	w.flushC = nil
	if len(w.held) == 0 {
		return nil
	}
	msgs := make([]*chatv1.Message, 0, len(w.held))
	for room, msg := range w.held {
		delete(w.held, room)
		msgs = append(msgs, msg)
	}
	return w.m.st.Send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Batch{Batch: &chatv1.MessageBatch{Messages: msgs}}})
}
