package collab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/internal/collab/ot"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	"github.com/bidikit/bidikit/reference/store"
)

// pendingOp is an accepted submit: queued, then appended to the log until
// the feed delivers it. Guarded by its document's mu.
type pendingOp struct {
	s      *sub
	m      *collabv1.Submit
	o      ot.Op // as submitted, based on version base
	base   uint64
	key    string
	resend bool // its client sent this seq or a higher one before

	// Of the current append (appendOp); an outcome of an older one is stale.
	attempt int
	expect  uint64 // the log's last version the append expects; it lands at expect+1
	e       entry  // the op transformed to expect, as it lands
	payload []byte

	over bool // acked or failed once stored (publishOwn, fail); guarded by subMu
}

// pump appends queued submits while fewer than the assembly's inFlight are
// in flight. Called with mu held.
func (d *doc) pump() {
	for len(d.queue) > 0 && !d.failed.Load() && len(d.inflight) < d.svc.asm.inFlight {
		p := d.queue[0]
		if v, ok := d.recent[p.key]; ok { // appended meanwhile (a resend, or through another instance)
			d.queue = d.queue[1:]
			d.ackDuplicate(p.s.c, p.m, v)
			p.s.c.st.CommitDone()
			continue
		}
		if p.resend && d.appending(p.key) {
			return // answered once the first copy is delivered (or failed)
		}
		d.queue[0] = nil
		d.queue = d.queue[1:]
		if e := d.appendOp(p); e != nil {
			d.finish(p, nil, e)
		}
	}
}

// appending reports whether an op with key is in flight. Called with mu
// held.
func (d *doc) appending(key string) bool {
	for _, p := range d.inflight {
		if p.key == key {
			return true
		}
	}
	return false
}

// finish ends p: its author gets ack or the Error e (either may be nil) and
// stops counting p in flight. Called with mu held.
func (d *doc) finish(p *pendingOp, ack *collabv1.ServerEvent, e *collabv1.Error) {
	if e != nil {
		e.Document, e.ClientId, e.ClientSeq = d.name, p.m.GetClientId(), p.m.GetClientSeq()
		p.s.c.reject(e)
	}
	if ack != nil {
		p.s.c.push(ack)
	}
	p.s.c.st.CommitDone()
}

// appendOp transforms p to the tip (the newest version, ops in flight
// included) and appends it, expecting the log to end there. A stored op is
// acknowledged when the feed delivers it; other outcomes reach appended on
// another goroutine (Append's callback must not block, and may run inside
// Append while mu is held). Called with mu held.
func (d *doc) appendOp(p *pendingOp) *collabv1.Error {
	tip := d.tip()
	if p.base > tip {
		return errorf(codes.FailedPrecondition, "submit.base_version", "base version %d is ahead of the document's version %d", p.base, tip)
	}
	if p.base < d.winBase {
		return errorf(codes.FailedPrecondition, "submit.base_version", "base version %d too old (the oldest kept is %d), reopen", p.base, d.winBase)
	}
	if bl, want := p.o.BaseLen(), d.lengthAt(p.base); bl != want {
		return errorf(codes.InvalidArgument, "submit.op", "op spans %d code points but version %d has %d", bl, p.base, want)
	}
	o, e := d.transformFrom(p.base, p.o)
	if e != nil {
		return e
	}
	tipLen := d.lengthAt(tip)
	if e := d.checkGrowth(o, tipLen); e != nil {
		return e
	}
	rop := &collabv1.RemoteOp{
		Document: d.name, Version: tip + 1, ClientId: p.m.GetClientId(), ClientSeq: p.m.GetClientSeq(),
		Author: p.s.c.user, Op: ToProto(o), ServerUnixNanos: time.Now().UnixNano(),
		ClientSentUnixNanos: p.m.GetClientSentUnixNanos(),
	}
	payload, err := proto.Marshal(rop)
	if err != nil { // cannot happen for a well-formed message
		return errorf(codes.Internal, "submit.op", "encoding the op: %v", err)
	}
	p.attempt++
	p.expect, p.payload = tip, payload
	p.e = entry{version: tip + 1, op: o, lenAfter: tipLen + o.TargetLen() - o.BaseLen(), key: p.key, rop: rop}
	d.inflight = append(d.inflight, p)
	svc, attempt := d.svc, p.attempt
	svc.log.Append(d.name, p.key, payload, tip, func(seq uint64, dup bool, err error) {
		if err == nil && !dup {
			d.stored(p, seq)
			return
		}
		svc.appends.Go(func() { d.appended(p, attempt, seq, dup, err) })
	})
	return nil
}

// stored publishes p, committed at seq (Append's callback, which the log
// calls in Append order, and never for an append that lost a race): the
// author's ack goes out without waiting for the feed, which then only
// applies the op (or publishes it, when it comes first). Takes subMu only.
func (d *doc) stored(p *pendingOp, seq uint64) {
	d.subMu.Lock()
	defer d.subMu.Unlock()
	d.publishOwn(p, seq)
}

// publishOwn publishes this document's op p at seq unless it was already
// (by stored or feed, whichever came first). Called with subMu held.
func (d *doc) publishOwn(p *pendingOp, seq uint64) {
	if seq <= d.published || p.over {
		return
	}
	p.over = true
	ack := &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Ack{Ack: &collabv1.Ack{
		Document: d.name, ClientId: p.m.GetClientId(), ClientSeq: p.m.GetClientSeq(), Version: seq,
		ClientSentUnixNanos: p.m.GetClientSentUnixNanos(),
	}}}
	d.svc.metrics.Committed.WithLabelValues(serviceLabel).Inc()
	d.publish(seq, &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Op{Op: p.e.rop}}, p.s.c, ack)
	p.s.c.st.CommitDone()
}

// appended handles an append of p that stored nothing: a duplicate, a lost
// race, or an error.
func (d *doc) appended(p *pendingOp, attempt int, seq uint64, dup bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := d.inflightIndex(p)
	if i < 0 || p.attempt != attempt {
		return // stale: delivered, requeued or failed meanwhile
	}
	var lf *logFailure
	switch {
	case err == nil && dup: // the key was stored before, at seq; the ops after p expected p
		d.requeue(i + 1)
		d.inflight = d.inflight[:i]
		d.ackDuplicate(p.s.c, p.m, seq)
		p.s.c.st.CommitDone()
	case errors.Is(err, store.ErrConflict) && !errors.As(err, &lf):
		// Another writer's entry is at p.expect+1: the feed delivers it
		// and then appends p again (see feed). (A store that refused the
		// record itself is a logFailure, below.)
		return
	default:
		if errors.As(err, &lf) || len(d.inflight) > 1 {
			// The ops after p were transformed over it: the document
			// cannot go on without knowing whether p is stored.
			msg := fmt.Sprintf("document %q: %v; reopen", d.name, err)
			if errors.Is(err, store.ErrClosed) {
				msg = "server shutting down"
			}
			d.svc.logger.Error("collab: an op was not committed", "document", d.name, "version", p.expect+1, "err", err)
			d.fail(msg)
			return
		}
		d.inflight = d.inflight[:0]
		d.svc.logger.Warn("collab: op not confirmed by the log", "document", d.name, "client_id", p.m.GetClientId(), "client_seq", p.m.GetClientSeq(), "err", err)
		d.finish(p, nil, errorf(codes.Unavailable, "submit", "op not confirmed by the log (%v); resend it with the same client_seq", err))
	}
	d.pump()
}

func (d *doc) inflightIndex(p *pendingOp) int {
	for i, q := range d.inflight {
		if q == p {
			return i
		}
	}
	return -1
}

// requeue puts the ops in flight from index i back at the head of the queue,
// in order, to be transformed and appended again (their appends expected
// versions that will not be theirs); an op that tried maxAppendTries times
// fails with UNAVAILABLE instead. Called with mu held.
func (d *doc) requeue(i int) {
	back := make([]*pendingOp, 0, len(d.inflight)-i+len(d.queue))
	for _, p := range d.inflight[i:] {
		if p.attempt >= maxAppendTries {
			d.finish(p, nil, errorf(codes.Unavailable, "submit", "document %q is too contended: gave up after %d tries to append; resend with the same client_seq", d.name, p.attempt))
			continue
		}
		back = append(back, p)
	}
	d.queue = append(back, d.queue...)
	clear(d.inflight[i:])
	d.inflight = d.inflight[:i]
}

// feed applies the log entry at seq to the text (the Follow callback, on
// the feed's goroutine) and publishes it unless stored did: the op goes to
// every subscriber, the ack to its author when the op is this document's
// own. It waits for mu, which no holder keeps longer than one log call.
func (d *doc) feed(seq uint64, payload []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed.Load() || !d.loaded || seq <= d.version {
		return
	}
	if seq != d.version+1 {
		d.fail(fmt.Sprintf("document %q: its log jumped from version %d to %d; reopen", d.name, d.version, seq))
		return
	}
	var p *pendingOp
	var e entry
	if len(d.inflight) > 0 && d.inflight[0].expect+1 == seq && bytes.Equal(d.inflight[0].payload, payload) {
		p, e = d.inflight[0], d.inflight[0].e
		d.inflight[0] = nil
		d.inflight = d.inflight[1:]
	} else {
		var err error
		if e, err = decodeEntry(seq, payload); err == nil && e.op.BaseLen() != d.rope.Len() {
			err = fmt.Errorf("version %d spans %d code points but the text has %d", seq, e.op.BaseLen(), d.rope.Len())
		}
		if err != nil {
			d.svc.logger.Error("collab: a log entry cannot be applied", "document", d.name, "version", seq, "err", err)
			d.fail(fmt.Sprintf("document %q: version %d of its log cannot be applied: %v; reopen", d.name, seq, err))
			return
		}
		if len(d.inflight) > 1 {
			// Several appends are in flight only on a log no one else
			// writes (assembly.inFlight); the later ones may land over
			// this entry.
			d.fail(fmt.Sprintf("document %q: version %d came from another writer while %d ops were in flight; reopen", d.name, seq, len(d.inflight)))
			return
		}
		d.requeue(0) // the op in flight lost the race: transformed over e and appended again
	}
	if err := d.rope.Apply(e.op); err != nil {
		d.svc.logger.Error("collab: a log entry cannot be applied", "document", d.name, "version", seq, "err", err)
		d.fail(fmt.Sprintf("document %q: version %d of its log cannot be applied: %v; reopen", d.name, seq, err))
		return
	}
	d.version = seq
	e.lenAfter = d.rope.Len()
	d.win = append(d.win, e)
	d.remember(e)
	d.trim()
	if every := d.svc.asm.snapshotEvery; every > 0 && seq%uint64(every) == 0 {
		d.svc.log.PutSnapshot(d.name, seq, d.rope.String(), func(err error) {
			if err != nil && !errors.Is(err, store.ErrClosed) {
				d.svc.logger.Warn("collab: storing a snapshot failed", "document", d.name, "version", seq, "err", err)
			}
		})
	}

	d.subMu.Lock()
	if p != nil {
		d.publishOwn(p, seq)
	} else if seq > d.published {
		d.publish(seq, &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Op{Op: e.rop}}, nil, nil)
	}
	d.subMu.Unlock()
	d.pump()
}

// fail marks the document failed and ends every stream that has it open or
// waits on it with UNAVAILABLE msg. Called with mu held.
func (d *doc) fail(msg string) {
	d.failed.Store(true)
	if d.stopFeed != nil {
		d.stopFeed()
		d.stopFeed = nil
	}
	waiting := append(d.queue, d.inflight...)
	d.queue, d.inflight = nil, nil
	d.subMu.Lock()
	defer d.subMu.Unlock()
	for _, p := range waiting {
		// The stream's end first, then the commit answered: a stream whose
		// client half-closed waits for its commits in flight and would
		// otherwise end with OK before this UNAVAILABLE (first end wins),
		// hiding that its op was lost.
		p.s.c.fail(codes.Unavailable, msg)
		if !p.over { // its stored callback may still come: it finds p over
			p.over = true
			p.s.c.st.CommitDone()
		}
	}
	for s := range d.subs {
		s.c.fail(codes.Unavailable, msg)
	}
}

// awaitVersion waits, up to sharedCallTimeout, until this instance has
// published version v when the log already holds it: an editor that moves
// here from another instance (or an earlier actor of the document) may know
// versions this one's feed has not delivered yet, and its
// Open.from_version must not look "ahead". Called without mu; a load
// failure is left for open to report.
func (d *doc) awaitVersion(v uint64) {
	current := func() (uint64, bool) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := d.load(); err != nil {
			return 0, false
		}
		d.subMu.Lock()
		defer d.subMu.Unlock()
		return d.published, true
	}
	ver, ok := current()
	if !ok || ver >= v {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedCallTimeout)
	defer cancel()
	if h, err := d.svc.log.Head(ctx, d.name); err != nil || h.Last < v {
		return // truly ahead (or unknowable): open says so
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for ver < v && ok {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ver, ok = current()
		}
	}
}
