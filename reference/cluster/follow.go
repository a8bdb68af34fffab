package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Timing of a Follow feed.
const (
	// followInactive is how long JetStream keeps a Follow consumer nobody
	// pulls from (its instance died without deleting it).
	followInactive = time.Minute
	// followHeartbeat and followExpiry pace the feed's pull requests: the
	// server sends an idle heartbeat every followHeartbeat, and two missed
	// ones (the server hosting the consumer died: an R1 consumer lives on
	// one server, usually the stream's leader) end the consumer, which the
	// feed then creates again after the last seq it delivered.
	followHeartbeat = 500 * time.Millisecond
	followExpiry    = 5 * time.Second
	// followRetryMin and followRetryMax bound the pause between attempts to
	// create the consumer again (doubling); followCreateTimeout bounds
	// each attempt. While a stream's leader is being elected (4-9 s after
	// its server died, nats-server's Raft timeouts) every attempt fails; a
	// short attempt and pause make the feed resume soon after the election.
	followRetryMin      = 100 * time.Millisecond
	followRetryMax      = time.Second
	followCreateTimeout = 2 * time.Second
)

// Follow delivers every message of room with seq > after to fn, in order,
// one at a time on one goroutine. It reads through an ephemeral consumer
// (memory, one replica, no acks) that it creates again, starting after the
// last seq it delivered, whenever the consumer stops answering: no gap and
// no duplicate across a lost consumer. (nats.go's ordered consumer does the
// same, but waits 10 s to notice and backs off up to 10 s between attempts:
// a room's feed would stay silent for up to 20 s after a JetStream server
// died.) Delivery goes on until stop is called; stop does not wait for a
// running fn. onErr (may be nil) hears about feed problems, among them a
// first consumer that could not be created (while a stream leader is
// elected): the feed keeps trying in the background, as after a loss.
func (l *Log) Follow(room string, after uint64, fn func(seq uint64, payload []byte), onErr func(error)) (stop func(), err error) {
	f := &follower{l: l, room: room, stream: l.StreamName(room), next: after + 1, fn: fn, onErr: onErr,
		stopC: make(chan struct{})}
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("follow room %q: %w", room, ErrClosed)
	}
	cons, err := f.create(followCreateTimeout)
	if err != nil {
		f.problem(fmt.Errorf("follow stream %s after seq %d (retrying every %v at most): %w", f.stream, after, followRetryMax, err))
		cons = nil
	}
	l.feedsMu.Lock()
	if l.feeds == nil {
		l.feeds = map[*follower]struct{}{}
	}
	l.feeds[f] = struct{}{}
	l.feedsMu.Unlock()
	l.bg.Add(1)
	go f.run(cons)
	return f.stop, nil
}

// follower is one Follow feed. Its goroutine (run) owns next and the
// consumers; mu guards the iterator that stop ends.
type follower struct {
	l      *Log
	room   string
	stream string
	next   uint64 // the next seq to deliver
	fn     func(seq uint64, payload []byte)
	onErr  func(error)

	stopOnce sync.Once
	stopC    chan struct{}
	mu       sync.Mutex
	it       jetstream.MessagesContext // the current iterator, nil between consumers
}

func (f *follower) stop() {
	f.stopOnce.Do(func() {
		close(f.stopC)
		f.mu.Lock()
		if f.it != nil {
			f.it.Stop()
		}
		f.mu.Unlock()
	})
}

// forget removes f from its Log's running feeds (run, on its way out).
func (f *follower) forget() {
	f.l.feedsMu.Lock()
	delete(f.l.feeds, f)
	f.l.feedsMu.Unlock()
}

func (f *follower) stopped() bool {
	select {
	case <-f.stopC:
		return true
	default:
		return false
	}
}

// create makes a consumer that starts at f.next.
func (f *follower) create(timeout time.Duration) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return f.l.js.CreateConsumer(ctx, f.stream, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       f.next,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: followInactive,
		MemoryStorage:     true,
		Replicas:          1,
	})
}

// run feeds from cons until stop, creating a new consumer after each
// failure.
func (f *follower) run(cons jetstream.Consumer) {
	defer f.l.bg.Done()
	defer f.forget()
	if cons == nil {
		if cons = f.recreate(); cons == nil {
			return
		}
	}
	for {
		err := f.consume(cons)
		f.delete(cons)
		if f.stopped() {
			return
		}
		f.problem(fmt.Errorf("feed of stream %s lost at seq %d, following again: %w", f.stream, f.next, err))
		if cons = f.recreate(); cons == nil {
			return
		}
	}
}

// recreate creates a consumer at f.next, retrying until it succeeds or the
// feed is stopped (nil). Only the first failure of a row is reported.
func (f *follower) recreate() jetstream.Consumer {
	wait := followRetryMin
	for attempt := 0; ; attempt++ {
		t := time.NewTimer(wait)
		select {
		case <-f.stopC:
			t.Stop()
			return nil
		case <-t.C:
		}
		cons, err := f.create(followCreateTimeout)
		if err == nil {
			return cons
		}
		if attempt == 0 {
			f.problem(fmt.Errorf("follow stream %s again at seq %d (retrying every %v at most): %w", f.stream, f.next, followRetryMax, err))
		}
		wait = min(wait*2, followRetryMax)
	}
}

// consume delivers cons's messages until the iterator fails (its error) or
// the feed is stopped (nil).
func (f *follower) consume(cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullHeartbeat(followHeartbeat), jetstream.PullExpiry(followExpiry),
		jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return err
	}
	f.mu.Lock()
	if f.stopped() {
		f.mu.Unlock()
		it.Stop()
		return nil
	}
	f.it = it
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.it = nil
		f.mu.Unlock()
		it.Stop()
	}()
	var lastDelivery uint64 // the consumer's own sequence: a hole means a lost delivery
	for {
		m, err := it.Next()
		if err != nil {
			if f.stopped() || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("message without JetStream metadata: %w", err)
		}
		if lastDelivery != 0 && md.Sequence.Consumer != lastDelivery+1 {
			return fmt.Errorf("delivery %d after %d: a delivery was lost", md.Sequence.Consumer, lastDelivery)
		}
		lastDelivery = md.Sequence.Consumer
		seq := md.Sequence.Stream
		if seq < f.next {
			continue // delivered before
		}
		f.next = seq + 1
		f.fn(seq, m.Data())
	}
}

// delete removes cons in the background (a consumer whose server died goes
// away on its own after followInactive).
func (f *follower) delete(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	f.l.bg.Add(1)
	go func() {
		defer f.l.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), f.l.cfg.Timeout)
		defer cancel()
		_ = f.l.js.DeleteConsumer(ctx, f.stream, info.Name)
	}()
}

func (f *follower) problem(err error) {
	f.l.log.Warn("room feed", "stream", f.stream, "err", err)
	if f.onErr != nil {
		f.onErr(err)
	}
}
