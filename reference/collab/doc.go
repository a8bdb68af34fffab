package collab

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/internal/collab/ot"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	"github.com/bidikit/bidikit/reference/store"
)

// maxClients bounds the per-document map of client ids whose highest
// client_seq is known; past it the map is reset and de-duplication falls
// back to the store's FindKey.
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

	// openAt and opened are guarded by d.subMu. Versions <= openAt are not
	// broadcast to this sub (its Opened covers them); opened is an Opened
	// event waiting for version openAt to commit, nil once sent.
	openAt uint64
	opened *collabv1.ServerEvent
}

type dupAck struct {
	c  *conn
	ev *collabv1.ServerEvent
}

// doc is the actor of one open document.
//
// Locking: mu serialises everything that reads or changes the text — opens,
// submits, cursor moves and the first load — and guards rope, version, the
// window, recent and clients. An accepted op is transformed, checked and
// applied to the rope under mu, gets the next version, and is appended to
// the store still under mu (so the store sees versions in order); it is
// published (ack, broadcast) only from the store's commit callback. The
// callback takes only subMu, which guards the subscriber set, committed and
// dupWait; mu may be held while taking subMu, never the reverse, and no one
// calls the store while holding subMu. Memory stores call done inside
// Append (under mu); SQLite on its writer goroutine: both are safe.
type doc struct {
	svc    *Service
	name   string
	stream string

	mu      sync.Mutex
	loaded  bool
	rope    *ot.Rope
	version uint64 // newest applied version; >= committed
	winBase uint64 // the window holds versions winBase+1 .. version
	baseLen int    // text length at winBase
	win     []entry
	recent  map[string]uint64 // de-dup key -> version, for the window
	clients map[string]uint64 // client id -> highest client_seq seen since load

	failed atomic.Bool // a commit failed: refuse everything, reload on next Open

	subMu     sync.Mutex
	subs      map[*sub]struct{}
	committed uint64
	dupWait   map[uint64][]dupAck

	refs int // streams holding the doc; guarded by svc.mu

	// Shared mode only (Service.shared set; see shared.go), guarded by mu.
	stopFeed func()       // stops the log feed; nil when not following
	queue    []*pendingOp // accepted submits waiting for their turn to be appended
	inflight *pendingOp   // the submit being appended, until the feed delivers it
}

func newDoc(s *Service, name string) *doc {
	return &doc{
		svc: s, name: name, stream: "collab/" + name,
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

// load reads the document from the store: the latest snapshot, then the ops
// after it, and the window of recent ops before it. Called with mu held.
func (d *doc) load() error {
	if d.loaded {
		return nil
	}
	if d.svc.shared != nil {
		return d.loadShared()
	}
	st := d.svc.store
	head, err := st.Head(d.stream)
	if err != nil {
		return fmt.Errorf("document %q: reading the log head: %w", d.name, err)
	}
	snap, hasSnap, err := st.LatestSnapshot(d.stream)
	if err != nil {
		return fmt.Errorf("document %q: reading the snapshot: %w", d.name, err)
	}
	var snapSeq uint64
	text := ""
	if hasSnap {
		snapSeq, text = snap.Seq, string(snap.Data)
	}
	if head.Last < snapSeq {
		head.Last = snapSeq
	}
	if head.Oldest > snapSeq+1 {
		return fmt.Errorf("document %q: the log starts at version %d but the newest snapshot is at %d", d.name, head.Oldest, snapSeq)
	}
	from := uint64(1)
	if head.Last > uint64(d.svc.cfg.RetainOps) {
		from = head.Last - uint64(d.svc.cfg.RetainOps) + 1
	}
	from = max(from, head.Oldest, 1)
	from = min(from, snapSeq+1)
	rope := ot.NewRope(text)
	var win []entry
	var preLens []int // lenAfter of window entries up to the snapshot, filled below
	err = st.Range(d.stream, from, head.Last, func(r store.Record) error {
		rop := &collabv1.RemoteOp{}
		if err := proto.Unmarshal(r.Payload, rop); err != nil {
			return fmt.Errorf("version %d: %w", r.Seq, err)
		}
		o, err := FromProto(rop.GetOp())
		if err != nil {
			return fmt.Errorf("version %d: %w", r.Seq, err)
		}
		if want := from + uint64(len(win)); r.Seq != want {
			return fmt.Errorf("version %d found where %d was expected", r.Seq, want)
		}
		e := entry{version: r.Seq, op: o, key: r.Key, rop: rop}
		if r.Seq > snapSeq {
			if err := rope.Apply(o); err != nil {
				return fmt.Errorf("version %d: %w", r.Seq, err)
			}
			e.lenAfter = rope.Len()
		} else {
			preLens = append(preLens, 0)
		}
		win = append(win, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("document %q: replaying the log: %w", d.name, err)
	}
	if got := from - 1 + uint64(len(win)); len(win) > 0 && got != head.Last || len(win) == 0 && snapSeq != head.Last {
		return fmt.Errorf("document %q: the log ends at version %d, want %d", d.name, got, head.Last)
	}
	// Lengths before the snapshot, walking back from the snapshot's length.
	n := len([]rune(text))
	for i := len(preLens) - 1; i >= 0; i-- {
		win[i].lenAfter = n
		n -= win[i].op.TargetLen() - win[i].op.BaseLen()
	}
	d.rope, d.win = rope, win
	d.winBase = from - 1
	d.baseLen = n
	if len(win) == 0 {
		d.winBase, d.baseLen = snapSeq, rope.Len()
	}
	d.version = head.Last
	d.indexWindow()
	d.loaded = true
	return nil
}

// indexWindow fills recent and clients from the window and marks version
// committed, at the end of a load. Called with mu held.
func (d *doc) indexWindow() {
	for _, e := range d.win {
		d.remember(e)
	}
	d.subMu.Lock()
	d.committed = d.version
	d.subMu.Unlock()
}

// remember records e's de-duplication key and its client's highest seq.
// Called with mu held.
func (d *doc) remember(e entry) {
	d.recent[e.key] = e.version
	if len(d.clients) >= maxClients {
		clear(d.clients)
	}
	if cid := e.rop.GetClientId(); e.rop.GetClientSeq() > d.clients[cid] {
		d.clients[cid] = e.rop.GetClientSeq()
	}
}

// lengthAt is the text length at version v (winBase <= v <= version).
// Called with mu held.
func (d *doc) lengthAt(v uint64) int {
	switch {
	case v == d.version:
		return d.rope.Len()
	case v == d.winBase:
		return d.baseLen
	}
	return d.win[v-d.winBase-1].lenAfter
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

// open subscribes s: it queues Opened (now, or once version openAt commits)
// and, for from_version within the window, the replayed ops.
func (d *doc) open(s *sub, from *uint64) *collabv1.Error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(); err != nil {
		d.svc.log.Error("collab: loading a document failed", "document", d.name, "err", err)
		d.failed.Store(true)
		return errorf(codes.Unavailable, "open.document", "%v", err)
	}
	if d.failed.Load() {
		return errorf(codes.Unavailable, "open.document", "document %q is unavailable after a storage failure; reopen it", d.name)
	}
	d.subMu.Lock()
	defer d.subMu.Unlock()
	if from != nil && *from > d.committed {
		return errorf(codes.FailedPrecondition, "open.from_version", "from_version %d is ahead of the document's version %d", *from, d.committed)
	}
	maxReplay := uint64(min(d.svc.cfg.RetainOps, d.svc.cfg.QueueEvents/2))
	if from != nil && *from >= d.winBase && d.committed-*from <= maxReplay {
		f := *from
		op := &collabv1.Opened{Document: d.name, Version: d.committed}
		if f < d.committed {
			op.ReplayFrom = f + 1
		}
		s.c.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Opened{Opened: op}})
		for v := f + 1; v <= d.committed; v++ {
			r := proto.Clone(d.win[v-d.winBase-1].rop).(*collabv1.RemoteOp)
			r.Replay = true
			s.c.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Op{Op: r}})
		}
		s.openAt = d.committed
	} else {
		ev := &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Opened{Opened: &collabv1.Opened{
			Document: d.name, Version: d.version, Snapshot: true, Text: d.rope.String(),
			VersionNotRetained: from != nil,
		}}}
		s.openAt = d.version
		if d.committed == d.version {
			s.c.push(ev)
		} else {
			s.opened = ev
		}
	}
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

// pending reports whether applied ops still wait for their commit.
func (d *doc) pending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.svc.shared != nil {
		return d.inflight != nil || len(d.queue) > 0
	}
	d.subMu.Lock()
	defer d.subMu.Unlock()
	return d.version != d.committed
}

// submit transforms, checks, applies and appends one op. It returns an
// Error for a refused op (the document is then unchanged) and nil when the
// op was accepted or recognised as a duplicate; the ack follows the commit.
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
	if known, ok := d.clients[cid]; !ok || seq <= known {
		v, found, err := d.findKey(key)
		if err != nil {
			return errorf(codes.Unavailable, "submit.client_seq", "checking for a resend failed: %v", err)
		}
		if found {
			d.ackDuplicate(s.c, m, v)
			return nil
		}
	}
	base := m.GetBaseVersion()
	if base > d.version {
		return errorf(codes.FailedPrecondition, "submit.base_version", "base version %d is ahead of the document's version %d", base, d.version)
	}
	if base < d.winBase {
		return errorf(codes.FailedPrecondition, "submit.base_version", "base version %d too old (the oldest kept is %d), reopen", base, d.winBase)
	}
	if bl, want := o.BaseLen(), d.lengthAt(base); bl != want {
		return errorf(codes.InvalidArgument, "submit.op", "op spans %d code points but version %d has %d", bl, base, want)
	}
	if n := o.InsertLen(); n > d.svc.cfg.MaxInsertRunes {
		return errorf(codes.InvalidArgument, "submit.op", "op inserts %d code points, more than the limit of %d", n, d.svc.cfg.MaxInsertRunes)
	}
	if d.svc.shared != nil {
		return d.enqueue(s, m, o, key) // transformed when its turn comes
	}
	o, e := d.transformFrom(base, o)
	if e != nil {
		return e
	}
	if e := d.checkGrowth(o); e != nil {
		return e
	}
	if err := d.rope.Apply(o); err != nil {
		return errorf(codes.Internal, "submit.op", "applying the transformed op: %v", err)
	}
	d.version++
	v := d.version
	now := time.Now().UnixNano()
	rop := &collabv1.RemoteOp{
		Document: d.name, Version: v, ClientId: cid, ClientSeq: seq, Author: s.c.user,
		Op: ToProto(o), ServerUnixNanos: now, ClientSentUnixNanos: m.GetClientSentUnixNanos(),
	}
	d.win = append(d.win, entry{version: v, op: o, lenAfter: d.rope.Len(), key: key, rop: rop})
	d.recent[key] = v
	if len(d.clients) >= maxClients {
		clear(d.clients)
	}
	d.clients[cid] = max(d.clients[cid], seq)
	d.trim()
	payload, err := proto.Marshal(rop)
	if err != nil { // cannot happen for a well-formed message; keep the doc consistent anyway
		d.failed.Store(true)
		return errorf(codes.Internal, "submit.op", "encoding the op: %v", err)
	}
	ev := &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Op{Op: rop}}
	ack := &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Ack{Ack: &collabv1.Ack{
		Document: d.name, ClientId: cid, ClientSeq: seq, Version: v, ClientSentUnixNanos: m.GetClientSentUnixNanos(),
	}}}
	author := s.c
	author.st.CommitStarted()
	d.svc.store.Append(store.Record{Stream: d.stream, Seq: v, Key: key, UnixNanos: now, Payload: payload},
		func(err error) { d.commit(v, ev, author, ack, err) })
	if v%uint64(d.svc.cfg.SnapshotEvery) == 0 {
		d.svc.store.PutSnapshot(store.Snapshot{Stream: d.stream, Seq: v, Data: []byte(d.rope.String())}, func(err error) {
			if err != nil && !errors.Is(err, store.ErrClosed) {
				d.svc.log.Warn("collab: storing a snapshot failed", "document", d.name, "version", v, "err", err)
			}
		})
	}
	return nil
}

// transformFrom transforms o, based on version base (winBase <= base <=
// version), over every op after base. Called with mu held.
func (d *doc) transformFrom(base uint64, o ot.Op) (ot.Op, *collabv1.Error) {
	for _, e := range d.win[base-d.winBase:] {
		var err error
		if o, _, err = ot.Transform(o, e.op, ot.Right); err != nil {
			return o, errorf(codes.Internal, "submit.op", "transforming against version %d: %v", e.version, err)
		}
	}
	return o, nil
}

// checkGrowth refuses o (transformed to the newest version) when it would
// grow the document past MaxDocRunes. Called with mu held.
func (d *doc) checkGrowth(o ot.Op) *collabv1.Error {
	if newLen := d.rope.Len() + o.TargetLen() - o.BaseLen(); newLen > d.svc.cfg.MaxDocRunes && newLen > d.rope.Len() {
		return errorf(codes.InvalidArgument, "submit.op", "the document would grow to %d code points, more than the limit of %d", newLen, d.svc.cfg.MaxDocRunes)
	}
	return nil
}

// findKey looks a de-duplication key up in the durable log.
func (d *doc) findKey(key string) (uint64, bool, error) {
	if d.svc.shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedCallTimeout)
		defer cancel()
		return d.svc.shared.Lookup(ctx, d.name, key)
	}
	return d.svc.store.FindKey(d.stream, key)
}

// ackDuplicate acks a resend of version v, at once if v is committed, else
// when it commits. Called with mu held.
func (d *doc) ackDuplicate(c *conn, m *collabv1.Submit, v uint64) {
	ev := &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Ack{Ack: &collabv1.Ack{
		Document: d.name, ClientId: m.GetClientId(), ClientSeq: m.GetClientSeq(), Version: v,
		Duplicate: true, ClientSentUnixNanos: m.GetClientSentUnixNanos(),
	}}}
	d.subMu.Lock()
	defer d.subMu.Unlock()
	if v <= d.committed {
		c.push(ev)
		return
	}
	d.dupWait[v] = append(d.dupWait[v], dupAck{c: c, ev: ev})
}

// commit is the store's done callback for version v: it publishes the op in
// version order (callbacks come in Append order). It takes only subMu and
// never blocks.
func (d *doc) commit(v uint64, ev *collabv1.ServerEvent, author *conn, ack *collabv1.ServerEvent, err error) {
	defer author.st.CommitDone()
	d.subMu.Lock()
	defer d.subMu.Unlock()
	if err != nil {
		if d.failed.CompareAndSwap(false, true) {
			d.svc.log.Error("collab: committing an op failed", "document", d.name, "version", v, "err", err)
		}
		msg := fmt.Sprintf("document %q: storing version %d failed: %v; reopen", d.name, v, err)
		if errors.Is(err, store.ErrClosed) {
			msg = "server shutting down"
		}
		for s := range d.subs {
			s.c.fail(codes.Unavailable, msg)
		}
		author.fail(codes.Unavailable, msg)
		return
	}
	if d.failed.Load() {
		// An earlier version failed: this one cannot be published in order.
		author.fail(codes.Unavailable, fmt.Sprintf("document %q is unavailable after a storage failure; reopen", d.name))
		return
	}
	d.svc.metrics.Committed.WithLabelValues(serviceLabel).Inc()
	d.publish(v, ev, author, ack)
}

// publish makes version v committed: every subscriber but the author gets
// ev, the author gets ack (when not nil), and acks of resends waiting for v
// go out. Called with subMu held; never blocks.
func (d *doc) publish(v uint64, ev *collabv1.ServerEvent, author *conn, ack *collabv1.ServerEvent) {
	d.committed = v
	for s := range d.subs {
		if s.opened != nil && v >= s.openAt {
			s.c.push(s.opened)
			s.opened = nil
		}
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

// cursor transforms a cursor from its version to the newest committed one
// and relays it to the document's other editors.
func (d *doc) cursor(s *sub, m *collabv1.Cursor) *collabv1.Error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.subMu.Lock()
	defer d.subMu.Unlock()
	cv := m.GetVersion()
	if cv > d.committed {
		return errorf(codes.FailedPrecondition, "cursor.version", "cursor version %d is ahead of the document's version %d", cv, d.committed)
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
	for v := cv + 1; v <= d.committed; v++ {
		o := d.win[v-d.winBase-1].op
		anchor, head = ot.TransformCursor(anchor, o), ot.TransformCursor(head, o)
	}
	ev := &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Cursor{Cursor: &collabv1.CursorUpdate{
		Document: d.name, ClientId: s.clientID, Author: s.c.user, Version: d.committed,
		Anchor: uint32(anchor), Head: uint32(head),
	}}}
	for o := range d.subs {
		if o != s && o.opened == nil && o.openAt <= d.committed {
			o.c.push(ev)
		}
	}
	return nil
}
