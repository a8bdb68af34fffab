// Package collab is the reference collaborative-editing service
// (bidikit.collab.v1.CollabService): plain-text documents edited with
// server-ordered operational transformation (Jupiter / ShareDB style).
//
// Each open document is a doc actor (see doc) guarded by its own mutex; each
// stream is a conn on a streamhost.Host: its receive loop decodes client
// events and calls into the doc actors, its writer drains the conn's
// bounded send queue.
// A document's versions are the seqs of its log (docLog): a localLog over
// the store (New) or a log shared with other instances (NewShared). Ops are
// published and acknowledged from the log's feed, so editors only ever see
// durable versions, in version order.
package collab

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/internal/collab/ot"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
)

// maxClients bounds the per-document map of client ids whose highest
// client_seq is known; past it the map is reset and de-duplication falls
// back to the log's Lookup.
const maxClients = 10_000

// entry is one operation in a document's in-memory window.
type entry struct {
	version  uint64
	op       ot.Op
	lenAfter int
	key      string
	rop      *collabv1.RemoteOp // as committed (replay=false); never mutated
}

// sub is one stream's subscription to one document.
type sub struct {
	c        *conn
	d        *doc
	clientID string

	// openAt is guarded by d.subMu: versions <= openAt are not broadcast to
	// this sub (its Opened covers them).
	openAt uint64
}

type dupAck struct {
	c  *conn
	ev *collabv1.ServerEvent
}

// doc is the actor of one open document.
//
// Locking: mu serialises everything that reads or changes the text — opens,
// submits, cursor moves, the first load, the log's outcomes and its feed —
// and guards the text, the window, the pending ops, recent and clients. An
// accepted op is queued, transformed to the newest version when its turn to
// be appended comes (see append.go), and applied to the text only when the
// log's feed delivers it, committed; then it is published (ack, broadcast).
// An op of this document is published as soon as the log says it is stored
// (Append's callback, see stored), which may come before the feed: versions
// version+1 .. published are then published but not applied yet, and are
// the first ops in flight. subMu guards the subscriber set, published and
// dupWait; mu may be held while taking subMu, never the reverse, and no one
// calls the log while holding subMu.
type doc struct {
	svc  *Service
	name string

	mu      sync.Mutex
	loaded  bool
	rope    *ot.Rope
	version uint64 // newest version the feed delivered (committed) and applied
	winBase uint64 // the window holds versions winBase+1 .. version
	baseLen int    // text length at winBase
	win     []entry
	recent  map[string]uint64 // de-dup key -> version, for the window
	clients map[string]uint64 // client id -> highest client_seq accepted since load

	stopFeed func()       // stops the log feed; nil when not following
	queue    []*pendingOp // accepted submits waiting for their turn to be appended
	inflight []*pendingOp // appended, in version order, until the feed delivers them

	failed atomic.Bool // the log failed: refuse everything, reload on next Open

	subMu     sync.Mutex
	subs      map[*sub]struct{}
	published uint64 // newest version sent to subscribers; version <= published <= tip
	dupWait   map[uint64][]dupAck

	refs int // streams holding the doc; guarded by svc.mu
}

func newDoc(s *Service, name string) *doc {
	return &doc{
		svc: s, name: name,
		rope: &ot.Rope{}, recent: map[string]uint64{}, clients: map[string]uint64{},
		subs: map[*sub]struct{}{}, dupWait: map[uint64][]dupAck{},
	}
}

func dedupKey(clientID string, seq uint64) string {
	return clientID + "\x00" + strconv.FormatUint(seq, 10)
}

// errorf builds an Error event for one client event.
func errorf(code codes.Code, field string, format string, args ...any) *collabv1.Error {
	return &collabv1.Error{Code: uint32(code), Field: field, Message: fmt.Sprintf(format, args...)}
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
	rop.Version, rop.Replay = seq, false
	return entry{version: seq, op: o, key: dedupKey(rop.GetClientId(), rop.GetClientSeq()), rop: rop}, nil
}

// load reads the document from its log: the newest snapshot (if the log
// keeps them), the entries after it, the window of recent entries before
// it, and then follows the log. Called with mu held; feed callbacks wait for
// mu, so none is lost or applied twice.
func (d *doc) load() error {
	if d.loaded {
		return nil
	}
	lg := d.svc.log
	ctx, cancel := context.WithTimeout(context.Background(), sharedLoadTimeout)
	defer cancel()
	head, err := lg.Head(ctx, d.name)
	if err != nil {
		return fmt.Errorf("document %q: reading the log head: %w", d.name, err)
	}
	snapSeq, text, hasSnap, err := lg.Snapshot(ctx, d.name)
	if err != nil {
		return err
	}
	head.Last = max(head.Last, snapSeq)
	if head.Oldest > snapSeq+1 {
		if !hasSnap {
			return fmt.Errorf("document %q: the log starts at version %d (older ops were dropped), so the text cannot be rebuilt", d.name, head.Oldest)
		}
		return fmt.Errorf("document %q: the log starts at version %d but the newest snapshot is at %d", d.name, head.Oldest, snapSeq)
	}
	// Entries from winFrom form the window; those after the snapshot are
	// applied.
	winFrom := uint64(1)
	if head.Last > uint64(d.svc.cfg.RetainOps) {
		winFrom = head.Last - uint64(d.svc.cfg.RetainOps) + 1
	}
	winFrom = max(winFrom, head.Oldest)
	from := min(winFrom, snapSeq+1)
	rope := ot.NewRope(text)
	textLen := rope.Len()
	baseLen := textLen
	var win []entry
	next := from
	if from <= head.Last {
		err = lg.Range(ctx, d.name, from, head.Last, func(seq uint64, payload []byte) error {
			if seq != next {
				return fmt.Errorf("version %d found where %d was expected", seq, next)
			}
			next++
			e, err := decodeEntry(seq, payload)
			if err != nil {
				return err
			}
			if seq > snapSeq {
				if err := rope.Apply(e.op); err != nil {
					return fmt.Errorf("version %d: %w", seq, err)
				}
				e.lenAfter = rope.Len()
				if seq == winFrom-1 {
					baseLen = rope.Len()
				}
			}
			if seq >= winFrom {
				win = append(win, e)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("document %q: replaying the log: %w", d.name, err)
		}
	}
	switch {
	case next-1 == head.Last:
	case len(win) == 0 && hasSnap && next == from: // only the snapshot is left
		winFrom, baseLen = snapSeq+1, textLen
	default:
		return fmt.Errorf("document %q: the log ends at version %d, want %d", d.name, next-1, head.Last)
	}
	// Lengths up to the snapshot, walking back from the snapshot's length.
	n := textLen
	for i := len(win) - 1; i >= 0; i-- {
		if win[i].version > snapSeq {
			continue
		}
		win[i].lenAfter = n
		n -= win[i].op.TargetLen() - win[i].op.BaseLen()
	}
	if winFrom <= snapSeq+1 {
		baseLen = n
	}
	d.rope, d.win, d.winBase, d.baseLen, d.version = rope, win, winFrom-1, baseLen, head.Last
	for _, e := range d.win {
		d.remember(e)
	}
	d.subMu.Lock()
	d.published = head.Last
	d.subMu.Unlock()
	stop, err := lg.Follow(d.name, head.Last, d.feed, func(err error) {
		d.svc.logger.Warn("collab: document feed problem", "document", d.name, "err", err)
	})
	if err != nil {
		return fmt.Errorf("document %q: following the log: %w", d.name, err)
	}
	d.stopFeed = stop
	d.loaded = true
	return nil
}

// stopLogFeed stops following the log.
func (d *doc) stopLogFeed() {
	d.mu.Lock()
	stop := d.stopFeed
	d.stopFeed = nil
	d.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// remember records e's de-duplication key and its client's highest seq.
// Called with mu held.
func (d *doc) remember(e entry) {
	d.recent[e.key] = e.version
	d.noteClient(e.rop.GetClientId(), e.rop.GetClientSeq())
}

// noteClient raises the highest client_seq known of cid. Called with mu
// held.
func (d *doc) noteClient(cid string, seq uint64) {
	if len(d.clients) >= maxClients {
		clear(d.clients)
	}
	if seq > d.clients[cid] {
		d.clients[cid] = seq
	}
}

// tip is the version the newest op in flight lands at. Called with mu held.
func (d *doc) tip() uint64 { return d.version + uint64(len(d.inflight)) }

// lengthAt is the text length at version v (winBase <= v <= tip), ops in
// flight included. Called with mu held.
func (d *doc) lengthAt(v uint64) int {
	switch {
	case v == d.version:
		return d.rope.Len()
	case v == d.winBase:
		return d.baseLen
	case v < d.version:
		return d.win[v-d.winBase-1].lenAfter
	}
	return d.inflight[v-d.version-1].e.lenAfter
}

// entryAt is the entry of version v (winBase < v <= tip), from the window
// or the ops in flight. Called with mu held.
func (d *doc) entryAt(v uint64) *entry {
	if v <= d.version {
		return &d.win[v-d.winBase-1]
	}
	return &d.inflight[v-d.version-1].e
}

// textAt is the text at version v (version <= v <= tip): the ops in flight
// up to v go to a scratch rope, the document's stays as the feed left it.
// Called with mu held.
func (d *doc) textAt(v uint64) (string, error) {
	if v == d.version {
		return d.rope.String(), nil
	}
	r := ot.NewRope(d.rope.String())
	for u := d.version + 1; u <= v; u++ {
		if err := r.Apply(d.entryAt(u).op); err != nil {
			return "", fmt.Errorf("document %q: applying version %d: %w", d.name, u, err)
		}
	}
	return r.String(), nil
}

// trim drops the oldest window entries beyond RetainOps (amortised).
func (d *doc) trim() {
	keep := d.svc.cfg.RetainOps
	if len(d.win) <= keep+keep/4 {
		return
	}
	drop := len(d.win) - keep
	for _, e := range d.win[:drop] {
		if d.recent[e.key] == e.version {
			delete(d.recent, e.key)
		}
	}
	d.baseLen = d.win[drop-1].lenAfter
	d.winBase = d.win[drop-1].version
	d.win = append(d.win[:0:0], d.win[drop:]...)
}

// open subscribes s: it queues Opened and, for from_version within the
// window, the replayed ops.
func (d *doc) open(s *sub, from *uint64) *collabv1.Error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(); err != nil {
		d.svc.logger.Error("collab: loading a document failed", "document", d.name, "err", err)
		d.failed.Store(true)
		return errorf(codes.Unavailable, "open.document", "%v", err)
	}
	if d.failed.Load() {
		return errorf(codes.Unavailable, "open.document", "document %q is unavailable after a storage failure; reopen it", d.name)
	}
	d.subMu.Lock()
	defer d.subMu.Unlock()
	top := d.published
	if from != nil && *from > top {
		return errorf(codes.FailedPrecondition, "open.from_version", "from_version %d is ahead of the document's version %d", *from, top)
	}
	maxReplay := uint64(min(d.svc.cfg.RetainOps, d.svc.cfg.QueueEvents/2))
	if from != nil && *from >= d.winBase && top-*from <= maxReplay {
		f := *from
		op := &collabv1.Opened{Document: d.name, Version: top}
		if f < top {
			op.ReplayFrom = f + 1
		}
		s.c.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Opened{Opened: op}})
		for v := f + 1; v <= top; v++ {
			r := proto.Clone(d.entryAt(v).rop).(*collabv1.RemoteOp)
			r.Replay = true
			s.c.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Op{Op: r}})
		}
	} else {
		text, err := d.textAt(top)
		if err != nil {
			return errorf(codes.Internal, "open.document", "%v", err)
		}
		s.c.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Opened{Opened: &collabv1.Opened{
			Document: d.name, Version: top, Snapshot: true, Text: text,
			VersionNotRetained: from != nil,
		}}})
	}
	s.openAt = top
	d.subs[s] = struct{}{}
	d.svc.metrics.Members.WithLabelValues(serviceLabel).Inc()
	return nil
}

// unsubscribe removes s; nothing more is queued for it.
func (d *doc) unsubscribe(s *sub) {
	d.subMu.Lock()
	if _, ok := d.subs[s]; ok {
		delete(d.subs, s)
		d.svc.metrics.Members.WithLabelValues(serviceLabel).Dec()
	}
	d.subMu.Unlock()
}

// pending reports whether accepted ops still wait for their commit.
func (d *doc) pending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.inflight) > 0 || len(d.queue) > 0
}

// submit checks one op and queues it for the log. It returns an Error for a
// refused op (the document is then unchanged) and nil when the op was
// accepted or recognised as a duplicate; the ack (or a later Error) follows
// the commit.
func (d *doc) submit(s *sub, m *collabv1.Submit, o ot.Op) *collabv1.Error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failed.Load() {
		return errorf(codes.Unavailable, "submit.document", "document %q is unavailable after a storage failure; reopen it", d.name)
	}
	cid, seq := m.GetClientId(), m.GetClientSeq()
	key := dedupKey(cid, seq)
	if v, ok := d.recent[key]; ok {
		d.ackDuplicate(s.c, m, v)
		return nil
	}
	resend := false
	if known, ok := d.clients[cid]; !ok || seq <= known {
		v, found, err := d.findKey(key)
		if err != nil {
			return errorf(codes.Unavailable, "submit.client_seq", "checking for a resend failed: %v", err)
		}
		if found {
			d.ackDuplicate(s.c, m, v)
			return nil
		}
		resend = ok
	}
	base := m.GetBaseVersion()
	if tip := d.tip() + uint64(len(d.queue)); base > tip {
		return errorf(codes.FailedPrecondition, "submit.base_version", "base version %d is ahead of the document's version %d", base, tip)
	}
	if base < d.winBase {
		return errorf(codes.FailedPrecondition, "submit.base_version", "base version %d too old (the oldest kept is %d), reopen", base, d.winBase)
	}
	if n := o.InsertLen(); n > d.svc.cfg.MaxInsertRunes {
		return errorf(codes.InvalidArgument, "submit.op", "op inserts %d code points, more than the limit of %d", n, d.svc.cfg.MaxInsertRunes)
	}
	if len(d.queue) >= d.svc.cfg.QueueEvents {
		return errorf(codes.ResourceExhausted, "submit", "document %q has %d ops waiting for the log, the limit; resend later", d.name, len(d.queue))
	}
	d.noteClient(cid, seq)
	s.c.st.CommitStarted()
	d.queue = append(d.queue, &pendingOp{s: s, m: m, o: o, base: base, key: key, resend: resend})
	d.pump()
	return nil
}

// transformFrom transforms o, based on version base (winBase <= base <=
// tip), over every op after base, those in flight included. Called with mu
// held.
func (d *doc) transformFrom(base uint64, o ot.Op) (ot.Op, *collabv1.Error) {
	var err error
	if base < d.version {
		for _, e := range d.win[base-d.winBase:] {
			if o, _, err = ot.Transform(o, e.op, ot.Right); err != nil {
				return o, errorf(codes.Internal, "submit.op", "transforming against version %d: %v", e.version, err)
			}
		}
	}
	for _, p := range d.inflight[max(base, d.version)-d.version:] {
		if o, _, err = ot.Transform(o, p.e.op, ot.Right); err != nil {
			return o, errorf(codes.Internal, "submit.op", "transforming against version %d: %v", p.e.version, err)
		}
	}
	return o, nil
}

// checkGrowth refuses o (transformed to the tip, whose text length is
// tipLen) when it would grow the document past MaxDocRunes.
func (d *doc) checkGrowth(o ot.Op, tipLen int) *collabv1.Error {
	if newLen := tipLen + o.TargetLen() - o.BaseLen(); newLen > d.svc.cfg.MaxDocRunes && newLen > tipLen {
		return errorf(codes.InvalidArgument, "submit.op", "the document would grow to %d code points, more than the limit of %d", newLen, d.svc.cfg.MaxDocRunes)
	}
	return nil
}

// findKey looks a de-duplication key up in the durable log.
func (d *doc) findKey(key string) (uint64, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sharedCallTimeout)
	defer cancel()
	return d.svc.log.Lookup(ctx, d.name, key)
}

// ackDuplicate acks a resend of version v, at once if v is published, else
// when it is. Called with mu held.
func (d *doc) ackDuplicate(c *conn, m *collabv1.Submit, v uint64) {
	ev := &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Ack{Ack: &collabv1.Ack{
		Document: d.name, ClientId: m.GetClientId(), ClientSeq: m.GetClientSeq(), Version: v,
		Duplicate: true, ClientSentUnixNanos: m.GetClientSentUnixNanos(),
	}}}
	d.subMu.Lock()
	defer d.subMu.Unlock()
	if v <= d.published {
		c.push(ev)
		return
	}
	d.dupWait[v] = append(d.dupWait[v], dupAck{c: c, ev: ev})
}

// publish sends version v (published+1): every subscriber but the author
// gets ev, the author gets ack (when not nil), and acks of resends waiting
// for v go out. Called with subMu held; never blocks.
func (d *doc) publish(v uint64, ev *collabv1.ServerEvent, author *conn, ack *collabv1.ServerEvent) {
	d.published = v
	for s := range d.subs {
		if v > s.openAt && s.c != author {
			s.c.push(ev)
		}
	}
	if ack != nil {
		author.push(ack)
	}
	if w, ok := d.dupWait[v]; ok {
		for _, a := range w {
			a.c.push(a.ev)
		}
		delete(d.dupWait, v)
	}
}

// cursor transforms a cursor from its version to the newest one and relays
// it to the document's other editors.
func (d *doc) cursor(s *sub, m *collabv1.Cursor) *collabv1.Error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.subMu.Lock()
	defer d.subMu.Unlock()
	cv, top := m.GetVersion(), d.published
	if cv > top {
		return errorf(codes.FailedPrecondition, "cursor.version", "cursor version %d is ahead of the document's version %d", cv, top)
	}
	if cv < d.winBase {
		return errorf(codes.FailedPrecondition, "cursor.version", "cursor version %d too old (the oldest kept is %d)", cv, d.winBase)
	}
	n := d.lengthAt(cv)
	anchor, head := int(m.GetAnchor()), int(m.GetHead())
	if anchor > n {
		return errorf(codes.InvalidArgument, "cursor.anchor", "anchor %d is past the end of version %d (%d code points)", anchor, cv, n)
	}
	if head > n {
		return errorf(codes.InvalidArgument, "cursor.head", "head %d is past the end of version %d (%d code points)", head, cv, n)
	}
	for v := cv + 1; v <= top; v++ {
		o := d.entryAt(v).op
		anchor, head = ot.TransformCursor(anchor, o), ot.TransformCursor(head, o)
	}
	ev := &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Cursor{Cursor: &collabv1.CursorUpdate{
		Document: d.name, ClientId: s.clientID, Author: s.c.user, Version: top,
		Anchor: uint32(anchor), Head: uint32(head),
	}}}
	for o := range d.subs {
		if o != s && o.openAt <= top {
			o.c.push(ev)
		}
	}
	return nil
}
