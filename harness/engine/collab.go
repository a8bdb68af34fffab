package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/collab/ot"
	"github.com/bidikit/bidikit/internal/collab/trace"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
)

// collabDriver is a Jupiter-style editor client: a local replica, at most one
// operation in flight, later local edits composed into a buffer; remote
// operations are transformed against both (the server gives the op
// committed first the left place at a tie, so ours go Right). The send loop
// owns seq and the rng; mu guards the replica state that the receive loop
// also changes.
//
// Nothing the server sends is healed silently: every version the stream
// carries (remote ops, and the client's own acked ops) is followed by a
// versionTrack, and whatever the client absorbs — a version missing,
// repeated or out of order, an op that does not apply, a replica given up
// for a snapshot — is an Anomaly event with the versions involved (see
// collab_stream.go).
type collabDriver struct {
	c        *vclient
	doc      string
	clientID string
	params   *EditorParams
	flood    bool // flooder: blind inserts against version 0, no replica
	editor   bool // an honest editor: counted in run.flushing, reports a Replica
	trace    *trace.Trace
	// traceTxn, tracePatch: the next patch of the trace (send loop).
	traceTxn, tracePatch int

	in    collabv1.ServerEvent
	wakeC chan struct{}
	// flushed reports (once) to the run that this editor's edits are all
	// committed; see run.flushed.
	flushed sync.Once

	mu          sync.Mutex
	opened      bool
	text        string
	version     uint64
	seq         uint64
	inflight    ot.Op
	inflightSeq uint64
	buffer      ot.Op
	resync      bool // a rejected op or a broken replica: reopen from a snapshot
	// openBackoff, reopen: an Open answered UNAVAILABLE (e.g. while a
	// clustered server elects the document's stream leader) is sent again
	// on the same stream once its back-off (doubling from minRetry up to
	// maxRetry, reset by Opened) has passed and reopen is set.
	openBackoff time.Duration
	reopen      bool
	streamGen   uint64 // counts start calls: a back-off of an earlier stream does nothing
	track       versionTrack
	// incremental counts the versions the replica applied op by op (remote
	// ops and its own acked ops), over all its streams (Replica.SenderSeq).
	incremental  uint64
	lastRemoteAt time.Time
	pending      map[uint64]time.Time // flood sends awaiting ack (bounded)
}

func newCollabDriver(c *vclient, p *EditorParams, flood bool) (*collabDriver, error) {
	d := &collabDriver{c: c, doc: c.plan.Scopes[0], clientID: c.plan.User + "." + c.r.opts.runID, params: p, flood: flood,
		wakeC: make(chan struct{}, 1), pending: map[uint64]time.Time{}}
	if p == nil {
		d.params = &EditorParams{MaxInsert: 8, DeleteRatio: 0.3}
	}
	d.editor = !flood && c.role.Behaviour == "editor"
	if d.editor {
		c.r.flushing.Add(1)
	}
	if d.params.Trace != "" {
		tr, err := trace.Load(d.params.Trace)
		if err != nil {
			return nil, err
		}
		d.trace = tr
	}
	return d, nil
}

func init() {
	RegisterService(Service{Name: scenario.Collab,
		Desc: &collabv1.CollabService_ServiceDesc.Streams[0], Method: collabv1.CollabService_Edit_FullMethodName,
		Attacker: func(c Client, _ int, flood bool) (Driver, error) {
			return newCollabDriver(c.(*vclient), nil, flood)
		},
		EndOfRun: readDocuments})
}

func (d *collabDriver) Message() proto.Message { return &d.in }
func (d *collabDriver) Wake() <-chan struct{}  { return d.wakeC }

func (d *collabDriver) signal() {
	select {
	case d.wakeC <- struct{}{}:
	default:
	}
}

func (d *collabDriver) Stale(uint64) {
	d.mu.Lock()
	d.resync = true
	d.mu.Unlock()
}

// start opens the document from a snapshot; the replica is reset when
// Opened arrives.
func (d *collabDriver) Start(w Stream) error {
	d.mu.Lock()
	d.opened = false
	d.resync = false
	d.reopen = false
	d.streamGen++
	d.mu.Unlock()
	return w.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: d.doc, ClientId: d.clientID}}})
}

// act makes n local edits (random, or the trace's next patches).
func (d *collabDriver) Act(w Stream, n int) error {
	for range n {
		if d.flood {
			if err := d.floodOne(w, "x"); err != nil {
				return err
			}
			continue
		}
		if err := d.local(w, func() ot.Op { return d.edit() }); err != nil {
			return err
		}
	}
	return nil
}

// local makes one local edit, the op mk returns (mu held while it runs;
// nil: none): applied to the replica, then submitted, or composed into the
// buffer while an op is in flight.
func (d *collabDriver) local(w Stream, mk func() ot.Op) error {
	d.mu.Lock()
	if !d.opened {
		d.mu.Unlock()
		return nil
	}
	op := mk()
	if op == nil {
		d.mu.Unlock()
		return nil
	}
	next, err := ot.Apply(d.text, op)
	if err != nil {
		d.mu.Unlock()
		return nil
	}
	d.text = next
	if d.inflight == nil && d.buffer == nil {
		sub := d.submitLocked(op)
		d.mu.Unlock()
		return d.sendSubmit(w, sub)
	}
	// Behind the op in flight, or behind a buffer an ack just released
	// but onWake has not sent yet (submitting op before it would base op
	// on edits the server has not seen).
	var absorbed []event.Event
	if d.buffer == nil {
		d.buffer = op
	} else if c, err := ot.Compose(d.buffer, op); err == nil {
		d.buffer = c
	} else {
		absorbed = d.giveUpLocked("harness: composing its own local edits failed: "+err.Error(), 0, d.version+1, "", codes.Internal, absorbed)
	}
	if d.inflight == nil {
		d.signal()
	}
	d.mu.Unlock()
	d.emitAll(absorbed)
	return nil
}

// edit makes one local operation on d.text (mu held).
func (d *collabDriver) edit() ot.Op {
	n := len([]rune(d.text))
	rng := d.c.rng
	if d.trace != nil {
		for d.traceTxn < len(d.trace.Txns) {
			txn := d.trace.Txns[d.traceTxn]
			if d.tracePatch >= len(txn.Patches) {
				d.traceTxn, d.tracePatch = d.traceTxn+1, 0
				continue
			}
			p := txn.Patches[d.tracePatch]
			d.tracePatch++
			pos := min(p.Pos, n)
			del := min(p.Del, n-pos)
			if op, err := ot.Splice(n, pos, del, p.Ins); err == nil && !op.IsNoop() {
				return op
			}
		}
		return nil
	}
	pos := rng.IntN(n + 1)
	if n > 0 && pos < n && rng.Float64() < d.params.DeleteRatio {
		del := 1 + rng.IntN(min(4, n-pos))
		op, _ := ot.Splice(n, pos, del, "")
		return op
	}
	k := 1 + rng.IntN(max(d.params.MaxInsert, 1))
	var b strings.Builder
	for range k {
		b.WriteByte(byte('a' + rng.IntN(26)))
	}
	op, _ := ot.Splice(n, pos, 0, b.String())
	return op
}

// submitLocked makes op the in-flight op (mu held).
func (d *collabDriver) submitLocked(op ot.Op) *collabv1.Submit {
	d.seq++
	d.inflight, d.inflightSeq = op, d.seq
	return &collabv1.Submit{Document: d.doc, BaseVersion: d.version, ClientId: d.clientID, ClientSeq: d.seq,
		Op: toProto(op), ClientSentUnixNanos: time.Now().UnixNano()}
}

func (d *collabDriver) sendSubmit(w Stream, s *collabv1.Submit) error {
	d.c.ev(&event.Event{Kind: event.Send, Scope: d.doc, MsgID: d.clientID + "/" + strconv.FormatUint(s.ClientSeq, 10), SenderSeq: s.ClientSeq})
	return w.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Submit{Submit: s}})
}

// floodOne submits an insert against version 0, which the server must
// transform against its whole retained log.
func (d *collabDriver) floodOne(w Stream, text string) error {
	d.mu.Lock()
	d.seq++
	seq := d.seq
	if len(d.pending) < maxPending {
		d.pending[seq] = time.Now()
	}
	d.mu.Unlock()
	s := &collabv1.Submit{Document: d.doc, BaseVersion: 0, ClientId: d.clientID, ClientSeq: seq,
		Op: toProto(ot.Op{}.Insert(text)), ClientSentUnixNanos: time.Now().UnixNano()}
	return d.sendSubmit(w, s)
}

// oversized sends an insert of n bytes: a flooder's blindly, an editor's
// as a local edit of its replica (a server that accepts it then leaves the
// replica consistent: nothing to rebuild).
func (d *collabDriver) Oversized(w Stream, n int) error {
	if d.flood {
		return d.floodOne(w, strings.Repeat("x", n))
	}
	return d.local(w, func() ot.Op {
		op, _ := ot.Splice(len([]rune(d.text)), 0, 0, strings.Repeat("x", n))
		return op
	})
}

// onWake sends the buffer once the in-flight op was acknowledged, or asks
// for a reconnect when the replica must be resynchronised.
func (d *collabDriver) OnWake(w Stream) error {
	d.mu.Lock()
	if d.resync {
		d.mu.Unlock()
		return ErrReconnect
	}
	if d.reopen && !d.opened {
		d.reopen = false
		d.mu.Unlock()
		return w.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: d.doc, ClientId: d.clientID}}})
	}
	if d.inflight != nil || d.buffer == nil || !d.opened {
		d.mu.Unlock()
		return nil
	}
	op := d.buffer
	d.buffer = nil
	sub := d.submitLocked(op)
	d.mu.Unlock()
	return d.sendSubmit(w, sub)
}

// markFlushed tells the run this editor has nothing left to commit.
func (d *collabDriver) markFlushed() {
	if d.editor {
		d.flushed.Do(d.c.r.flushed)
	}
}

// Stopped implements Stopper: an editor that stops for good never holds
// the others up.
func (d *collabDriver) Stopped() { d.markFlushed() }

// finish, bounded in time: waits until every local edit is acknowledged,
// then until every editor of the run has done the same, then until remote
// operations have gone quiet, and reports the replica.
func (d *collabDriver) Finish(ctx context.Context, w Stream, recvDone <-chan struct{}) {
	if !d.editor {
		return
	}
	const quiet, limit = 300 * time.Millisecond, 10 * time.Second
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	allFlushed := d.c.r.allFlushed
	for {
		d.mu.Lock()
		mine := d.opened && d.inflight == nil && d.buffer == nil
		settled := time.Since(d.lastRemoteAt) > quiet
		d.mu.Unlock()
		if mine {
			d.markFlushed()
		}
		if mine && allFlushed == nil && settled {
			break
		}
		select {
		case <-ctx.Done():
			d.noReplica("the run ended before it settled")
			return
		case <-recvDone:
			d.noReplica("its stream ended before it settled")
			return
		case <-deadline.C:
			d.markFlushed()
			d.mu.Lock()
			unacked := d.inflight != nil || d.buffer != nil
			d.mu.Unlock()
			why := fmt.Sprintf("it did not settle within %s", limit)
			if unacked {
				why = fmt.Sprintf("its edits were not all acknowledged within %s", limit)
			}
			d.noReplica(why)
			return
		case <-allFlushed:
			allFlushed = nil
		case <-d.wakeC:
			if err := d.OnWake(w); err != nil {
				return
			}
		case <-t.C:
		}
	}
	d.mu.Lock()
	ok := d.opened && !d.resync
	text, version, incremental := d.text, d.version, d.incremental
	d.mu.Unlock()
	if !ok {
		d.noReplica("it was not open, or was resyncing, at the end")
		return
	}
	d.c.ev(&event.Event{Kind: event.Replica, Scope: d.doc, Seq: version, Text: text, SenderSeq: incremental})
}

// noReplica says this editor ends without a replica to judge, and why.
func (d *collabDriver) noReplica(why string) {
	d.c.ev(&event.Event{Kind: event.Replica, Scope: d.doc, Field: event.FieldNoReplica, Detail: why})
}

func (d *collabDriver) Handle(m proto.Message) {
	in := m.(*collabv1.ServerEvent)
	switch ev := in.Event.(type) {
	case *collabv1.ServerEvent_Opened:
		o := ev.Opened
		d.mu.Lock()
		d.opened, d.reopen, d.openBackoff = true, false, 0
		d.text, d.version = o.Text, o.Version
		d.track.reset(o.Version)
		d.inflight, d.buffer = nil, nil
		d.lastRemoteAt = time.Now()
		d.mu.Unlock()
		d.c.ev(&event.Event{Kind: event.Join, Scope: o.Document, Seq: o.Version, ReplayFrom: o.ReplayFrom, Complete: !o.VersionNotRetained})
	case *collabv1.ServerEvent_Ack:
		a := ev.Ack
		e := event.Event{Kind: event.Ack, Scope: a.Document, MsgID: a.ClientId + "/" + strconv.FormatUint(a.ClientSeq, 10),
			SenderSeq: a.ClientSeq, Seq: a.Version, Duplicate: a.Duplicate}
		if a.ClientSentUnixNanos > 0 {
			e.Latency = time.Duration(time.Now().UnixNano() - a.ClientSentUnixNanos)
		}
		// own: the ack holds the op's place in the stream's version order
		// (a duplicate's version is the first copy's, long past).
		own := !a.Duplicate && a.Version > 0
		var absorbed []event.Event
		d.mu.Lock()
		delete(d.pending, a.ClientSeq)
		if own {
			absorbed = d.receivedLocked(a.Version, e.MsgID, "the ack of its own op "+e.MsgID, absorbed)
		}
		if !d.flood && d.inflight != nil && a.ClientSeq == d.inflightSeq {
			switch {
			case d.resync: // already given up: nothing to apply or count
			case a.Version != d.version+1 && !a.Duplicate:
				// A version we never saw: the replica cannot be trusted.
				absorbed = d.giveUpLocked(fmt.Sprintf("the ack of its op %s says version %d, the replica expected version %d",
					e.MsgID, a.Version, d.version+1), a.Version, d.version+1, e.MsgID, codes.OK, absorbed)
			case !a.Duplicate:
				d.incremental++
			}
			d.version = max(d.version, a.Version)
			d.inflight = nil
			d.signal()
		}
		d.mu.Unlock()
		d.c.ev(&e)
		if own {
			d.c.ev(&event.Event{Kind: event.Deliver, Scope: a.Document, Seq: a.Version, Sender: d.c.plan.User,
				MsgID: e.MsgID, SenderSeq: a.ClientSeq, Field: event.FieldOwnAck})
		}
		d.emitAll(absorbed)
	case *collabv1.ServerEvent_Op:
		r := ev.Op
		now := time.Now()
		e := event.Event{Kind: event.Deliver, Scope: r.Document, Seq: r.Version, Sender: r.Author,
			MsgID: r.ClientId + "/" + strconv.FormatUint(r.ClientSeq, 10), SenderSeq: r.ClientSeq, Replay: r.Replay}
		if !r.Replay && r.ClientSentUnixNanos > 0 {
			e.Latency = time.Duration(now.UnixNano() - r.ClientSentUnixNanos)
		}
		absorbed := d.applyRemote(r, e.MsgID, now)
		d.c.ev(&e)
		d.emitAll(absorbed)
	case *collabv1.ServerEvent_Error:
		er := ev.Error
		msgID := er.ClientId + "/" + strconv.FormatUint(er.ClientSeq, 10)
		var absorbed []event.Event
		d.mu.Lock()
		if !d.flood && d.inflight != nil && er.ClientSeq == d.inflightSeq {
			// Our op was refused: the replica has diverged, and the server
			// said why (an Error with no code still said something).
			code := codes.Code(er.Code)
			if code == codes.OK {
				code = codes.Unknown
			}
			absorbed = d.giveUpLocked(fmt.Sprintf("the server refused its op %s with %s: %s", msgID, code, er.Message),
				0, d.version+1, msgID, code, absorbed)
		}
		if !d.opened && strings.HasPrefix(er.Field, "open") && codes.Code(er.Code) == codes.Unavailable {
			d.openBackoff = min(max(d.openBackoff*2, minRetry), maxRetry)
			gen := d.streamGen
			time.AfterFunc(d.openBackoff, func() {
				d.mu.Lock()
				d.reopen = d.reopen || (gen == d.streamGen && !d.opened)
				d.mu.Unlock()
				d.signal()
			})
		}
		d.mu.Unlock()
		d.c.ev(&event.Event{Kind: event.Error, Code: codes.Code(er.Code), Detail: er.Message, Field: er.Field,
			Scope: er.Document, MsgID: msgID, SenderSeq: er.ClientSeq})
		d.emitAll(absorbed)
	}
}

// applyRemote records that remote op r (msgID) arrived and, unless this
// client is a flooder (no replica) or already resynchronising, transforms it
// against the in-flight op and the buffer and applies it to the replica. It
// returns the anomalies it absorbed, to be emitted after r's Deliver.
func (d *collabDriver) applyRemote(r *collabv1.RemoteOp, msgID string, now time.Time) []event.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastRemoteAt = now
	absorbed := d.receivedLocked(r.Version, msgID, "remote op "+msgID, nil)
	if d.flood || !d.opened || d.resync {
		return absorbed
	}
	if r.Version <= d.version {
		return absorbed // already applied: a repeat, reported above
	}
	if r.Version != d.version+1 {
		return d.giveUpLocked(fmt.Sprintf("remote op %s for version %d arrived while version %d was expected", msgID, r.Version, d.version+1),
			r.Version, d.version+1, msgID, codes.OK, absorbed)
	}
	notApplicable := func(err error) []event.Event {
		cause := fmt.Sprintf("remote op %s for version %d does not apply to the replica at version %d: %v", msgID, r.Version, d.version, err)
		absorbed = append(absorbed, d.anomaly(event.AnomalyNotApplicable, r.Version, d.version+1, msgID, cause))
		return d.giveUpLocked(cause, r.Version, d.version+1, msgID, codes.OK, absorbed)
	}
	op := fromProto(r.Op)
	var err error
	if d.inflight != nil {
		if d.inflight, op, err = ot.Transform(d.inflight, op, ot.Right); err != nil {
			return notApplicable(fmt.Errorf("transforming it against the op in flight: %w", err))
		}
	}
	if d.buffer != nil {
		if d.buffer, op, err = ot.Transform(d.buffer, op, ot.Right); err != nil {
			return notApplicable(fmt.Errorf("transforming it against the local edits not yet sent: %w", err))
		}
	}
	text, err := ot.Apply(d.text, op)
	if err != nil {
		return notApplicable(err)
	}
	d.text = text
	d.version = r.Version
	d.incremental++
	return absorbed
}

func (d *collabDriver) Ended() {
	d.mu.Lock()
	was := d.opened
	d.opened = false
	d.mu.Unlock()
	if was {
		d.c.ev(&event.Event{Kind: event.Leave, Scope: d.doc})
	}
}

func toProto(op ot.Op) *collabv1.Operation {
	out := &collabv1.Operation{Components: make([]*collabv1.Component, 0, len(op))}
	for _, c := range op {
		switch c.Kind {
		case ot.Retain:
			out.Components = append(out.Components, &collabv1.Component{Kind: &collabv1.Component_Retain{Retain: uint32(c.N)}})
		case ot.Insert:
			out.Components = append(out.Components, &collabv1.Component{Kind: &collabv1.Component_Insert{Insert: c.Text}})
		case ot.Delete:
			out.Components = append(out.Components, &collabv1.Component{Kind: &collabv1.Component_Delete{Delete: uint32(c.N)}})
		}
	}
	return out
}

func fromProto(p *collabv1.Operation) ot.Op {
	var op ot.Op
	for _, c := range p.GetComponents() {
		switch k := c.Kind.(type) {
		case *collabv1.Component_Retain:
			op = op.Retain(int(k.Retain))
		case *collabv1.Component_Insert:
			op = op.Insert(k.Insert)
		case *collabv1.Component_Delete:
			op = op.Delete(int(k.Delete))
		}
	}
	return op
}
