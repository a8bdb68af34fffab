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

// Sender order.
//
// A writer is a sender with one Send.sender_session (possibly empty). Its
// Sends to one room go to the log through one chain per (room, writer), in
// arrival order, each once the log has decided the previous one's place
// (placer). The local log decides at once and commits later, so a writer's
// Sends are pipelined and the chain runs on the stream's receive loop. A
// JetStream log decides only when it has stored a message, so the chain
// has one Send in flight and its own goroutine: pipelined, a later one could
// be stored while an earlier one is lost with a dying stream leader or
// retried by the NATS client after a "no responders", and the earlier one
// could then only be stored after it.
//
// With a sender_session the order also holds across instances, and across
// the death of the instance that stored the writer's newest message: every
// Send is placed on the condition that the writer's newest stored message
// is the one this chain knows (SharedLog.PublishAfter), so the log refuses
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

// orderCallTimeout bounds each log call made to settle one Send (a placement
// through waitPlacer, a read of the writer's newest message or key). Only
// the calls that need one get a context: most Sends need none.
const orderCallTimeout = 15 * time.Second

// outgoing is one validated Send waiting in its writer's chain, then in
// the log until its commit. It holds a room reference and an in-flight
// count of its stream from send until finish.
type outgoing struct {
	svc     *Service
	r       *room
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
	// while someone (runChain, or enqueue's caller) works through the queue.
	queue   []*outgoing
	running bool
	// The rest belongs to whoever works through the queue. known, last and
	// lastSS: the log seq and sender_seq of the writer's newest placed
	// message (last 0: none), when known (ordered chains).
	known  bool
	last   uint64
	lastSS uint64
	// top is the highest sender_seq this chain placed as a new message
	// since the room was loaded (seen: it placed one). A Send above it
	// cannot be a resend (sender seqs increase, per the contract), so the
	// log need not look its key up in storage.
	seen bool
	top  uint64
}

func writerOf(user, session string) string { return user + "\x00" + session }

// enqueue adds o to its writer's chain in r and works through the chain
// when nobody does: on the caller's goroutine when the placer decides at
// once, else on a new goroutine.
func (s *Service) enqueue(r *room, o *outgoing) {
	m := o.m
	r.chainMu.Lock()
	c := m.chain
	if c == nil || m.chainSession != o.session {
		w := writerOf(o.ss.user, o.session)
		if r.chains == nil {
			r.chains = map[string]*chain{}
		}
		if c = r.chains[w]; c == nil {
			c = &chain{writer: w, ordered: o.session != ""}
			r.chains[w] = c
		}
		m.chain, m.chainSession = c, o.session
	}
	c.queue = append(c.queue, o)
	start := !c.running
	c.running = true
	r.chainMu.Unlock()
	switch {
	case !start:
	case s.pl.atOnce():
		s.runChain(r, c)
	default:
		s.bg.Add(1)
		go func() { defer s.bg.Done(); s.runChain(r, c) }()
	}
}

// runChain places c's Sends in arrival order until the queue is empty. A
// Send the log took is finished by its done (logged); the others here.
func (s *Service) runChain(r *room, c *chain) {
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
		if !s.settleSafely(r, c, o) {
			o.finish()
		}
	}
}

// finish gives back o's in-flight count and room reference.
func (o *outgoing) finish() {
	o.ss.inflightDone()
	o.svc.rooms.release(o.r)
}

// logged is o's done for the placer: it queues the ack (or the Error of a
// failed commit) and finishes o. It never blocks.
func (o *outgoing) logged(seq uint64, dup bool, err error) {
	if err != nil {
		o.svc.unsettled(o.r, o, err)
	} else {
		o.svc.acked(o.r, o, published{seq: seq, dup: dup})
	}
	o.finish()
}

// settleSafely is settle; a panic (a server bug) answers the Send with
// UNAVAILABLE instead of ending the process.
func (s *Service) settleSafely(r *room, c *chain, o *outgoing) (taken bool) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic settling a Send", "room", r.name, "user", o.ss.user, "panic", p)
			c.known = false
			if !taken {
				s.unsettled(r, o, fmt.Errorf("internal error: %v", p))
			}
		}
	}()
	return s.settle(r, c, o, &taken)
}

// settle places o in the log (or answers it without placing it) and
// reports whether the log took it: then its done queues the ack or the
// Error event. *taken is set as soon as the log took it.
func (s *Service) settle(r *room, c *chain, o *outgoing, taken *bool) bool {
	if o.ss.st.Ended() {
		return false // the stream ended before o's turn: its client resends o
	}
	if f := o.m.fence.Load(); f != 0 {
		if o.sseq > f {
			o.ss.reject(codes.Unavailable, "send", r.name, o.id, fmt.Sprintf(
				"not stored: your message with sender_seq %d in room %q was not confirmed, and this one (sender_seq %d) must not overtake it; resend from sender_seq %d on, in order",
				f, r.name, o.sseq, f))
			return false
		}
		o.m.fence.CompareAndSwap(f, 0) // the resend has begun
	}
	for attempt := 1; ; attempt++ {
		if c.ordered && !c.known {
			if err := s.readWriter(r, c); err != nil {
				s.unsettled(r, o, err)
				return false
			}
		}
		if c.ordered && c.last > 0 && o.sseq <= c.lastSS {
			return s.settleOld(r, c, o, taken)
		}
		res := s.place(r, c, o, c.last, c.seen && o.sseq > c.top)
		switch {
		case res.err == nil:
			*taken = true
			if !res.dup {
				if c.ordered {
					c.last, c.lastSS = res.seq, o.sseq
				}
				c.seen, c.top = true, max(c.top, o.sseq)
			}
			return true
		case errors.Is(res.err, store.ErrConflict) && attempt < maxOrderAttempts:
			c.known = false // another instance stored one of the writer's: look again
			continue
		default:
			// known stays: if o was stored after all, the condition of the
			// writer's next publish fails (or its resend is a duplicate).
			s.unsettled(r, o, res.err)
			return false
		}
	}
}

// place hands o to the placer, after writerLast for an ordered chain.
func (s *Service) place(r *room, c *chain, o *outgoing, writerLast uint64, fresh bool) published {
	writer := ""
	if c.ordered {
		writer = c.writer
	}
	return s.pl.place(r.name, writer, o.key, o.raw, writerLast, fresh, o.logged)
}

// settleOld answers a Send whose sender_seq is not above its writer's newest
// stored message: a resend of a stored message (duplicate ack) or one that
// would break the writer's order (FAILED_PRECONDITION).
func (s *Service) settleOld(r *room, c *chain, o *outgoing, taken *bool) bool {
	// The log answers a resend it knows by key itself (JetStream: inside
	// its Duplicates window); the condition of this placement never holds,
	// so nothing else is stored.
	res := s.place(r, c, o, math.MaxUint64, false)
	switch {
	case res.err == nil:
		*taken = true
		if !res.dup { // cannot happen; never claim it was not stored
			c.known = false
		}
		return true
	case !errors.Is(res.err, store.ErrConflict):
		s.unsettled(r, o, res.err)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), orderCallTimeout)
	defer cancel()
	seq, found, err := s.lg.WriterKey(ctx, r.name, c.writer, o.key, c.last)
	if err != nil {
		s.unsettled(r, o, err)
		return false
	}
	if found {
		s.acked(r, o, published{seq: seq, dup: true})
		return false
	}
	o.ss.reject(codes.FailedPrecondition, "send.sender_seq", r.name, o.id, fmt.Sprintf(
		"not stored, and never will be: your message with sender_seq %d is already stored in room %q at seq %d (sender_session %q); storing sender_seq %d after it would break your order",
		c.lastSS, r.name, c.last, o.session, o.sseq))
	return false
}

// readWriter reads c's writer's newest stored message from the log.
func (s *Service) readWriter(r *room, c *chain) error {
	ctx, cancel := context.WithTimeout(context.Background(), orderCallTimeout)
	defer cancel()
	seq, payload, found, err := s.lg.WriterLast(ctx, r.name, c.writer)
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
		"message not confirmed by the log (%v); resend it with the same client_msg_id, then every later unacknowledged message of this room, in order", err))
}
