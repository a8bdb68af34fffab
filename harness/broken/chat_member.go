package broken

import (
	"context"
	"sync"
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
	kicked  chan struct{} // closed once, when out overflowed
	once    sync.Once
	sendMu  sync.Mutex // serialises direct sends (BlockingBroadcast)
	rooms   map[string]*room
}

// push queues ev for the writer without ever waiting: a member whose queue
// is full is a slow consumer, ended with RESOURCE_EXHAUSTED.
func (m *member) push(ev *chatv1.ServerEvent) {
	if m.direct {
		// defect: BlockingBroadcast (sends at once, with the publisher's room lock held)
		m.sendMu.Lock()
		_ = m.st.Send(ev)
		m.sendMu.Unlock()
		return
	}
	select {
	case m.out <- ev:
	default:
		m.once.Do(func() { close(m.kicked) })
	}
}

// write sends queued events until the queue is closed and empty (nil: the
// client said goodbye), the member is kicked, a Send fails or the stream's
// ctx ends.
func (m *member) write(ctx context.Context) error {
	held := map[string]*chatv1.ServerEvent{} // ReorderSome: one live message per room
	var flushC <-chan time.Time
	flush := func() error {
		flushC = nil
		for room, ev := range held {
			delete(held, room)
			if err := m.st.Send(ev); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-m.kicked:
			return status.Errorf(codes.ResourceExhausted, "slow consumer: more than %d events queued for this stream", queueLen)
		case <-flushC:
			if err := flush(); err != nil {
				return err
			}
		case ev, ok := <-m.out:
			if !ok {
				return flush()
			}
			if m.reorder {
				if msg := ev.GetMessage(); msg != nil && !msg.Replay {
					// defect: ReorderSome (the next live message of the room overtakes this one)
					h := held[msg.Room]
					if h == nil {
						held[msg.Room] = ev
						if flushC == nil {
							flushC = time.After(reorderWait)
						}
						continue
					}
					delete(held, msg.Room)
					if err := m.st.Send(ev); err != nil {
						return err
					}
					if err := m.st.Send(h); err != nil {
						return err
					}
					continue
				}
				if err := flush(); err != nil {
					return err
				}
			}
			if err := m.st.Send(ev); err != nil {
				return err
			}
		}
	}
}
