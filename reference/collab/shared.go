package collab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/internal/collab/ot"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/store"
)

// SharedLog is a per-document operation log that several server instances
// share (package cluster implements it over NATS JetStream, one stream per
// document). The log's sequence IS the document version: every entry is a
// RemoteOp already transformed against every entry before it, so replaying
// the log in order rebuilds the text on any instance.
//
// Versions are assigned by the log through optimistic concurrency: an
// instance transforms an op against the newest version it has applied (v)
// and appends it expecting the log to end at v. When another instance got
// there first the append fails with an error wrapping store.ErrConflict, and
// the instance waits for the log's newer entries, transforms again and
// retries. No sequencer of ours exists: JetStream decides who was first.
//
// Methods are safe for concurrent use.
type SharedLog interface {
	// Head returns the document log's bounds, creating the empty log on
	// first use.
	Head(ctx context.Context, doc string) (store.Head, error)
	// Follow delivers every entry with seq > after, in seq order, one at a
	// time on one goroutine, until stop is called. onErr hears about feed
	// problems.
	Follow(doc string, after uint64, fn func(seq uint64, payload []byte), onErr func(error)) (stop func(), err error)
	// Append stores payload under the de-duplication key key if the log
	// ends at expectLast. done is called exactly once, never blocking: with
	// the seq, with duplicate and the first copy's seq for a known key, with
	// an error wrapping store.ErrConflict when the log had grown, or with
	// another error (the entry may or may not be stored).
	Append(doc, key string, payload []byte, expectLast uint64, done func(seq uint64, duplicate bool, err error))
	// Range calls fn for the retained entries with from <= seq <= to, in
	// order, stopping at fn's first error.
	Range(ctx context.Context, doc string, from, to uint64, fn func(seq uint64, payload []byte) error) error
	// Lookup returns the seq stored under key, if the log retains it.
	Lookup(ctx context.Context, doc, key string) (seq uint64, found bool, err error)
}

// sharedCallTimeout bounds one SharedLog call made while serving a client
// event (Head, Lookup).
const sharedCallTimeout = 10 * time.Second

// sharedLoadTimeout bounds replaying a document's whole log on first use.
const sharedLoadTimeout = 2 * time.Minute

// maxAppendTries bounds how often one submit is transformed again and
// re-appended after losing the race to other instances; past it the author
// gets Error UNAVAILABLE and resends.
const maxAppendTries = 64

// NewShared returns a collab service whose documents live in lg, shared
// with other instances, counting into m (nil: discarded); log may be nil
// (slog.Default). Snapshots are not stored in shared mode: an instance
// opening a document replays its log. The caller owns lg.
func NewShared(cfg Config, lg SharedLog, m *metrics.Set, log *slog.Logger) (*Service, error) {
	if lg == nil {
		return nil, errors.New("collab: nil shared log")
	}
	return newService(cfg, nil, lg, m, log)
}

// pendingOp is a validated submit of a shared-mode document waiting to be
// appended. Guarded by its document's mu.
type pendingOp struct {
	s    *sub
	m    *collabv1.Submit
	o    ot.Op // as submitted, based on version base
	base uint64
	key  string

	expect     uint64 // the version the appended op was transformed to; it lands at expect+1
	tries      int
	conflicted bool // the append lost a race: retry once the feed passes expect
}

// decodeEntry decodes the log entry at seq.
func decodeEntry(seq uint64, payload []byte) (entry, error) {
	rop := &collabv1.RemoteOp{}
	if err := proto.Unmarshal(payload, rop); err != nil {
		return entry{}, fmt.Errorf("version %d: %w", seq, err)
	}
	o, err := FromProto(rop.GetOp())
	if err != nil {
		return entry{}, fmt.Errorf("version %d: %w", seq, err)
	}
	rop.Version = seq
	return entry{version: seq, op: o, key: dedupKey(rop.GetClientId(), rop.GetClientSeq()), rop: rop}, nil
}

// loadShared replays the document's whole log into the rope, keeps the last
// RetainOps entries as the window and starts following the log. Called
// with mu held and d not loaded; feed callbacks wait for mu, so none is
// lost or applied twice.
func (d *doc) loadShared() error {
	lg := d.svc.shared
	ctx, cancel := context.WithTimeout(context.Background(), sharedLoadTimeout)
	defer cancel()
	head, err := lg.Head(ctx, d.name)
	if err != nil {
		return fmt.Errorf("document %q: reading the shared log head: %w", d.name, err)
	}
	if head.Oldest > 1 {
		return fmt.Errorf("document %q: the shared log starts at version %d (older ops were dropped), so the text cannot be rebuilt", d.name, head.Oldest)
	}
	winFrom := uint64(1)
	if head.Last > uint64(d.svc.cfg.RetainOps) {
		winFrom = head.Last - uint64(d.svc.cfg.RetainOps) + 1
	}
	rope := &ot.Rope{}
	var win []entry
	baseLen := 0
	next := uint64(1)
	err = lg.Range(ctx, d.name, 1, head.Last, func(seq uint64, payload []byte) error {
		if seq != next {
			return fmt.Errorf("version %d found where %d was expected", seq, next)
		}
		next++
		e, err := decodeEntry(seq, payload)
		if err != nil {
			return err
		}
		if err := rope.Apply(e.op); err != nil {
			return fmt.Errorf("version %d: %w", seq, err)
		}
		if seq == winFrom-1 {
			baseLen = rope.Len()
		}
		if seq >= winFrom {
			e.lenAfter = rope.Len()
			e.rop.Replay = false
			win = append(win, e)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("document %q: replaying the shared log: %w", d.name, err)
	}
	if next-1 != head.Last {
		return fmt.Errorf("document %q: the shared log ends at version %d, want %d", d.name, next-1, head.Last)
	}
	d.rope, d.win, d.winBase, d.baseLen, d.version = rope, win, winFrom-1, baseLen, head.Last
	d.indexWindow()
	stop, err := lg.Follow(d.name, head.Last, d.feed, func(err error) {
		d.svc.log.Warn("collab: document feed problem", "document", d.name, "err", err)
	})
	if err != nil {
		return fmt.Errorf("document %q: following the shared log: %w", d.name, err)
	}
	d.stopFeed = stop
	d.loaded = true
	return nil
}

// stopSharedFeed stops following the log (shared mode; a no-op otherwise).
func (d *doc) stopSharedFeed() {
	d.mu.Lock()
	stop := d.stopFeed
	d.stopFeed = nil
	d.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// enqueue queues a validated submit for appending. Called with mu held.
func (d *doc) enqueue(s *sub, m *collabv1.Submit, o ot.Op, key string) *collabv1.Error {
	if len(d.queue) >= d.svc.cfg.QueueEvents {
		return errorf(codes.ResourceExhausted, "submit", "document %q has %d ops waiting for the shared log, the limit; resend later", d.name, len(d.queue))
	}
	s.c.st.CommitStarted()
	d.queue = append(d.queue, &pendingOp{s: s, m: m, o: o, base: m.GetBaseVersion(), key: key})
	d.pump()
	return nil
}

// pump appends the next queued submit when none is in flight. Called with
// mu held.
func (d *doc) pump() {
	for d.inflight == nil && len(d.queue) > 0 && !d.failed.Load() {
		p := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		if e := d.appendShared(p); e != nil {
			d.finish(p, nil, e)
		}
	}
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

// appendShared transforms p to the newest applied version and appends it,
// expecting the log to end there. The outcome reaches appended on another
// goroutine (Append's callback must not block, and may run inside Append
// while mu is held). Called with mu held and nothing in flight.
func (d *doc) appendShared(p *pendingOp) *collabv1.Error {
	if v, ok := d.recent[p.key]; ok { // appended meanwhile, through another instance
		d.ackDuplicate(p.s.c, p.m, v)
		p.s.c.st.CommitDone()
		return nil
	}
	if p.base < d.winBase {
		return errorf(codes.FailedPrecondition, "submit.base_version", "base version %d too old (the oldest kept is %d), reopen", p.base, d.winBase)
	}
	o, e := d.transformFrom(p.base, p.o)
	if e != nil {
		return e
	}
	if e := d.checkGrowth(o); e != nil {
		return e
	}
	rop := &collabv1.RemoteOp{
		Document: d.name, Version: d.version + 1, ClientId: p.m.GetClientId(), ClientSeq: p.m.GetClientSeq(),
		Author: p.s.c.user, Op: ToProto(o), ServerUnixNanos: time.Now().UnixNano(),
		ClientSentUnixNanos: p.m.GetClientSentUnixNanos(),
	}
	payload, err := proto.Marshal(rop)
	if err != nil { // cannot happen for a well-formed message
		return errorf(codes.Internal, "submit.op", "encoding the op: %v", err)
	}
	p.expect, p.conflicted = d.version, false
	p.tries++
	d.inflight = p
	svc := d.svc
	svc.shared.Append(d.name, p.key, payload, p.expect, func(seq uint64, dup bool, err error) {
		svc.appends.Go(func() { d.appended(p, seq, dup, err) })
	})
	return nil
}

// appended handles the outcome of p's append. A stored op is acknowledged
// when the feed delivers it (see feed), not here: the author's ack then
// follows every earlier version on this instance too.
func (d *doc) appended(p *pendingOp, seq uint64, dup bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inflight != p {
		return // the feed delivered it already
	}
	switch {
	case err == nil && !dup:
		return // stored at seq; the feed delivers it
	case err == nil: // the key was stored before, at seq
		d.inflight = nil
		d.ackDuplicate(p.s.c, p.m, seq)
		p.s.c.st.CommitDone()
	case errors.Is(err, store.ErrConflict):
		if p.tries >= maxAppendTries {
			d.inflight = nil
			d.finish(p, nil, errorf(codes.Unavailable, "submit", "document %q is too contended: gave up after %d tries to append; resend with the same client_seq", d.name, p.tries))
			break
		}
		if d.version <= p.expect {
			p.conflicted = true // the feed retries it once it has the newer entries
			return
		}
		d.inflight = nil
		d.queue = append([]*pendingOp{p}, d.queue...)
	default:
		d.inflight = nil
		d.svc.log.Warn("collab: op not confirmed by the shared log", "document", d.name, "client_id", p.m.GetClientId(), "client_seq", p.m.GetClientSeq(), "err", err)
		d.finish(p, nil, errorf(codes.Unavailable, "submit", "op not confirmed by the shared log (%v); resend it with the same client_seq", err))
	}
	d.pump()
}

// feed applies the log entry at seq (the Follow callback, on the feed's
// goroutine): the op goes to every subscriber, the ack to its author when
// the author is on this instance. It waits for mu, which no holder keeps
// longer than one shared-log call.
func (d *doc) feed(seq uint64, payload []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed.Load() || !d.loaded || seq <= d.version {
		return
	}
	if seq != d.version+1 {
		d.failShared(fmt.Sprintf("document %q: its shared log jumped from version %d to %d; reopen", d.name, d.version, seq))
		return
	}
	e, err := decodeEntry(seq, payload)
	if err == nil && e.op.BaseLen() != d.rope.Len() {
		err = fmt.Errorf("version %d spans %d code points but the text has %d", seq, e.op.BaseLen(), d.rope.Len())
	}
	if err == nil {
		err = d.rope.Apply(e.op)
	}
	if err != nil {
		d.svc.log.Error("collab: a shared log entry cannot be applied", "document", d.name, "version", seq, "err", err)
		d.failShared(fmt.Sprintf("document %q: version %d of its shared log cannot be applied: %v; reopen", d.name, seq, err))
		return
	}
	d.version = seq
	e.lenAfter = d.rope.Len()
	d.win = append(d.win, e)
	d.remember(e)
	d.trim()

	ev := &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Op{Op: e.rop}}
	var author *conn
	var ack *collabv1.ServerEvent
	p := d.inflight
	if p != nil && p.key == e.key {
		d.inflight = nil
		author = p.s.c
		ack = &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Ack{Ack: &collabv1.Ack{
			Document: d.name, ClientId: p.m.GetClientId(), ClientSeq: p.m.GetClientSeq(), Version: seq,
			ClientSentUnixNanos: p.m.GetClientSentUnixNanos(),
		}}}
		d.svc.metrics.Committed.WithLabelValues(serviceLabel).Inc()
	}
	d.subMu.Lock()
	d.publish(seq, ev, author, ack)
	d.subMu.Unlock()
	if author != nil {
		author.st.CommitDone()
	}
	if p != nil && d.inflight == p && p.conflicted && seq > p.expect {
		d.inflight = nil
		d.queue = append([]*pendingOp{p}, d.queue...)
	}
	d.pump()
}

// failShared marks the document failed and ends every stream that has it
// open or waits on it with UNAVAILABLE msg. Called with mu held.
func (d *doc) failShared(msg string) {
	d.failed.Store(true)
	if d.stopFeed != nil {
		d.stopFeed()
		d.stopFeed = nil
	}
	waiting := d.queue
	if d.inflight != nil {
		waiting = append(waiting, d.inflight)
	}
	d.queue, d.inflight = nil, nil
	for _, p := range waiting {
		p.s.c.st.CommitDone()
		p.s.c.fail(codes.Unavailable, msg)
	}
	d.subMu.Lock()
	defer d.subMu.Unlock()
	for s := range d.subs {
		s.c.fail(codes.Unavailable, msg)
	}
}

// awaitVersion waits, up to sharedCallTimeout, until this instance has
// applied version v when the shared log already holds it: an editor that
// moves here from another instance may know versions this one's feed has
// not delivered yet, and its Open.from_version must not look "ahead".
// Called without mu; a load failure is left for open to report.
func (d *doc) awaitVersion(v uint64) {
	current := func() (uint64, bool) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := d.load(); err != nil {
			return 0, false
		}
		return d.version, true
	}
	ver, ok := current()
	if !ok || ver >= v {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedCallTimeout)
	defer cancel()
	if h, err := d.svc.shared.Head(ctx, d.name); err != nil || h.Last < v {
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
