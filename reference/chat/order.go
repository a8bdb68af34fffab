package chat

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/reference/store"
)

// Sender order in shared mode.
//
// A writer is a sender with one Send.sender_session (possibly empty). Its
// Sends to one room are published to the shared log one at a time, each once
// the previous one's outcome is known: pipelined, a later one could be stored
// while an earlier one is lost with a dying stream leader or retried by the
// NATS client after a "no responders", and the earlier one could then only
// be stored after it. A chain per (room, writer) holds the writer's Sends
// waiting on this instance; one goroutine at a time works through it.
//
// With a sender_session the order also holds across instances, and across
// the death of the instance that stored the writer's newest message: every
// Send is published on the condition that the writer's newest stored message
// is the one this instance knows (SharedLog.PublishAfter), so the log refuses
// it when another instance stored one meanwhile, and the chain reads the
// writer's newest message again. A Send whose sender_seq is not above the
// newest stored one's is a resend (acked as a duplicate) or would be ordered
// after a later message: that one is refused with FAILED_PRECONDITION.
//
// A Send whose outcome the log did not confirm fences its membership (the
// stream's presence in the room): the stream's later Sends to the room with
// a higher sender_seq are refused with UNAVAILABLE until the stream sends
// that sender_seq, or an older one, again, so that the client resends in
// order instead of a later message overtaking the unconfirmed one.

// maxOrderAttempts bounds how often one Send is published again after the
// log said its writer's newest message had moved.
const maxOrderAttempts = 5

// orderCallTimeout bounds the log calls made to settle one Send.
const orderCallTimeout = 15 * time.Second

// outgoing is one validated Send waiting in its writer's chain.
type outgoing struct {
	ss      *session
	m       *membership
	id, key string // client_msg_id; de-duplication key (user + id)
	sseq    uint64
	session string
	raw     []byte // the encoded Message, without seq
	now     int64  // when this instance ordered it (Message.server_unix_nanos)
}

// chain holds one writer's Sends to one room on this instance.
type chain struct {
	writer  string // user "\x00" sender_session
	ordered bool   // a sender_session: the order is kept against the log
	// queue and running are guarded by the room's chainMu; running is true
	// while a goroutine (runChain) works through the queue.
	queue   []*outgoing
	running bool
	// known, last and lastSS belong to the goroutine running the chain:
	// the log seq and sender_seq of the writer's newest stored message
	// (last 0: none), when known.
	known  bool
	last   uint64
	lastSS uint64
}

func writerOf(user, session string) string { return user + "\x00" + session }

// enqueue adds o to its writer's chain in r, starting the chain's goroutine
// when none runs. The caller took a room reference and an in-flight count
// for o; the chain gives both back once o is settled.
func (s *Service) enqueue(r *room, o *outgoing) {
	w := writerOf(o.ss.user, o.session)
	r.chainMu.Lock()
	if r.chains == nil {
		r.chains = map[string]*chain{}
	}
	c := r.chains[w]
	if c == nil {
		c = &chain{writer: w, ordered: o.session != ""}
		r.chains[w] = c
	}
	c.queue = append(c.queue, o)
	start := !c.running
	c.running = true
	r.chainMu.Unlock()
	if start {
		s.bg.Add(1)
		go s.runChain(r, c)
	}
}

// runChain settles c's Sends in arrival order until the queue is empty.
func (s *Service) runChain(r *room, c *chain) {
	defer s.bg.Done()
	for {
		r.chainMu.Lock()
		if len(c.queue) == 0 {
			c.running = false
			c.queue = nil
			r.chainMu.Unlock()
			return
		}
		o := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		r.chainMu.Unlock()
		s.settleSafely(r, c, o)
		o.ss.inflightDone()
		s.rooms.release(r)
	}
}

// settleSafely is settle; a panic (a server bug) answers the Send with
// UNAVAILABLE instead of ending the process.
func (s *Service) settleSafely(r *room, c *chain, o *outgoing) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic settling a Send", "room", r.name, "user", o.ss.user, "panic", p)
			c.known = false
			s.unsettled(r, o, fmt.Errorf("internal error: %v", p))
		}
	}()
	s.settle(r, c, o)
}

// settle publishes o (or answers it without publishing) and queues its ack
// or Error event.
func (s *Service) settle(r *room, c *chain, o *outgoing) {
	if o.ss.st.Ended() {
		return // the stream ended before o's turn: its client resends o
	}
	if f := o.m.fence.Load(); f != 0 {
		if o.sseq > f {
			o.ss.reject(codes.Unavailable, "send", r.name, o.id, fmt.Sprintf(
				"not stored: your message with sender_seq %d in room %q was not confirmed, and this one (sender_seq %d) must not overtake it; resend from sender_seq %d on, in order",
				f, r.name, o.sseq, f))
			return
		}
		o.m.fence.CompareAndSwap(f, 0) // the resend has begun
	}
	ctx, cancel := context.WithTimeout(context.Background(), orderCallTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		if c.ordered && !c.known {
			if err := s.readWriter(ctx, r, c); err != nil {
				s.unsettled(r, o, err)
				return
			}
		}
		if c.ordered && c.last > 0 && o.sseq <= c.lastSS {
			s.settleOld(ctx, r, c, o)
			return
		}
		res := s.publishWait(r, c, o, c.last)
		switch {
		case res.err == nil:
			if c.ordered && !res.dup {
				c.last, c.lastSS = res.seq, o.sseq
			}
			s.acked(r, o, res)
		case errors.Is(res.err, store.ErrConflict) && attempt < maxOrderAttempts:
			c.known = false // another instance stored one of the writer's: look again
			continue
		default:
			// known stays: if o was stored after all, the condition of the
			// writer's next publish fails (or its resend is a duplicate).
			s.unsettled(r, o, res.err)
		}
		return
	}
}

// settleOld answers a Send whose sender_seq is not above its writer's newest
// stored message: a resend of a stored message (duplicate ack) or one that
// would break the writer's order (FAILED_PRECONDITION).
func (s *Service) settleOld(ctx context.Context, r *room, c *chain, o *outgoing) {
	// Inside the Duplicates window the log answers a resend itself; the
	// condition of this publish never holds, so nothing else is stored.
	res := s.publishWait(r, c, o, math.MaxUint64)
	switch {
	case res.err == nil:
		if !res.dup { // cannot happen; never claim it was not stored
			c.known = false
		}
		s.acked(r, o, res)
		return
	case !errors.Is(res.err, store.ErrConflict):
		s.unsettled(r, o, res.err)
		return
	}
	seq, found, err := s.shared.WriterKey(ctx, r.name, c.writer, o.key, c.last)
	if err != nil {
		s.unsettled(r, o, err)
		return
	}
	if found {
		s.acked(r, o, published{seq: seq, dup: true})
		return
	}
	o.ss.reject(codes.FailedPrecondition, "send.sender_seq", r.name, o.id, fmt.Sprintf(
		"not stored, and never will be: your message with sender_seq %d is already stored in room %q at seq %d (sender_session %q); storing sender_seq %d after it would break your order",
		c.lastSS, r.name, c.last, o.session, o.sseq))
}

// readWriter reads c's writer's newest stored message from the log.
func (s *Service) readWriter(ctx context.Context, r *room, c *chain) error {
	seq, payload, found, err := s.shared.WriterLast(ctx, r.name, c.writer)
	if err != nil {
		return err
	}
	c.known, c.last, c.lastSS = true, 0, 0
	if found {
		ss, err := senderSeqOf(payload)
		if err != nil {
			c.known = false
			return fmt.Errorf("the writer's newest message (seq %d) is unreadable: %w", seq, err)
		}
		c.last, c.lastSS = seq, ss
	}
	return nil
}

// published is a publish's outcome.
type published struct {
	seq uint64
	dup bool
	err error
}

// publishWait publishes o (after writerLast, for an ordered writer) and
// waits for the log's answer.
func (s *Service) publishWait(r *room, c *chain, o *outgoing, writerLast uint64) published {
	ch := make(chan published, 1)
	done := func(seq uint64, dup bool, err error) { ch <- published{seq, dup, err} }
	if c.ordered {
		s.shared.PublishAfter(r.name, c.writer, o.key, o.raw, writerLast, done)
	} else {
		s.shared.Publish(r.name, o.key, o.raw, done)
	}
	t := time.NewTimer(orderCallTimeout)
	defer t.Stop()
	select {
	case res := <-ch:
		return res
	case <-t.C:
		return published{err: fmt.Errorf("the shared log did not answer within %v", orderCallTimeout)}
	}
}

// acked queues o's ack.
func (s *Service) acked(r *room, o *outgoing, res published) {
	nanos := o.now
	if res.dup {
		nanos = time.Now().UnixNano()
	} else {
		s.mCommitted.Inc()
	}
	o.ss.pushEvent(ackEvent(r.name, o.id, res.seq, res.dup, nanos))
}

// unsettled answers a Send whose outcome is unknown with UNAVAILABLE and
// fences its membership at its sender_seq (see the file comment).
func (s *Service) unsettled(r *room, o *outgoing, err error) {
	for {
		f := o.m.fence.Load()
		if (f != 0 && f <= o.sseq) || o.m.fence.CompareAndSwap(f, o.sseq) {
			break
		}
	}
	s.log.Warn("message publish failed", "room", r.name, "user", o.ss.user, "client_msg_id", o.id, "err", err)
	o.ss.reject(codes.Unavailable, "send", r.name, o.id, fmt.Sprintf(
		"message not confirmed by the shared log (%v); resend it with the same client_msg_id, then every later unacknowledged message of this room, in order", err))
}
