package broken

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/internal/collab/ot"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
)

// Limits of the corpus collab server.
const (
	// editorQueue bounds each stream's queue of events; one that
	// overflows ends that stream with RESOURCE_EXHAUSTED.
	editorQueue = 1024
	// keepOps bounds a document's log of committed ops: an op based on an
	// older version is refused (FAILED_PRECONDITION) and its editor reopens.
	keepOps = 4096
	// swapWait is how long CollabSwapTwo holds an op's broadcast for the
	// next op to overtake it before sending it alone.
	swapWait = 100 * time.Millisecond
)

type collabStream = grpc.BidiStreamingServer[collabv1.ClientEvent, collabv1.ServerEvent]

// collabServer is the corpus's server-ordered OT collab server: documents
// in memory, every op transformed against what was committed after its base
// version, committed under the server's lock, acked to its author and
// broadcast to the other editors; one bounded queue and one writer per
// stream. Its handler goroutine is the stream's writer; a reader goroutine
// per stream handles client events and ends when the stream does.
type collabServer struct {
	collabv1.UnimplementedCollabServiceServer
	defect CollabDefect
	// stop is closed by Stop; CollabSwapTwo's flush timers end on it.
	stop chan struct{}
	// wg counts readers and flush timers; Stop waits for them.
	wg sync.WaitGroup

	// mu guards docs and everything in them. Pushes to editors happen with
	// mu held, so every queue receives a document's events in commit order.
	mu   sync.Mutex
	docs map[string]*collabDoc
}

// collabDoc is one document (guarded by collabServer.mu).
type collabDoc struct {
	name    string
	text    string
	version uint64
	log     []committed       // ascending version, about keepOps
	dropped uint64            // the highest version dropped from log (0: none)
	seen    map[string]uint64 // client_id + "/" + client_seq -> version
	editors map[*editor]bool
	commits int     // ops committed: the defects fire on every defectEvery-th
	held    *heldOp // CollabSwapTwo: a broadcast waiting for the next op
}

type committed struct {
	version uint64
	op      ot.Op
}

// heldOp is a broadcast CollabSwapTwo holds back.
type heldOp struct {
	ev     *collabv1.ServerEvent
	author *editor
}

// editor is one stream. out is its bounded queue: pushed to by the reader
// and by committers holding the server's lock, drained by the writer (the
// handler goroutine), closed by the reader once the client said goodbye
// and the editor is in no document. docs is guarded by the server's mu.
type editor struct {
	user   string
	out    chan *collabv1.ServerEvent
	kicked chan struct{} // closed once, when out overflowed
	once   sync.Once
	docs   map[string]*collabDoc
}

// StartCollabStream serves the corpus collab server with defect d
// (CollabNone: the correct variant) on free loopback ports.
func StartCollabStream(d CollabDefect) (*Server, error) {
	s := &collabServer{defect: d, stop: make(chan struct{}), docs: map[string]*collabDoc{}}
	srv, err := serve("collab "+d.String(), func(gs *grpc.Server) { collabv1.RegisterCollabServiceServer(gs, s) },
		func() { close(s.stop) })
	if err != nil {
		return nil, err
	}
	srv.OnStop(s.wg.Wait)
	return srv, nil
}

// Edit serves one stream: this goroutine writes, a reader goroutine handles
// client events. On the client's io.EOF the reader closes every document
// and the queue; the writer sends what is queued and the stream ends with
// nil.
func (s *collabServer) Edit(st collabStream) error {
	user, err := userOf(st.Context())
	if err != nil {
		return err
	}
	e := &editor{user: user, out: make(chan *collabv1.ServerEvent, editorQueue), kicked: make(chan struct{}),
		docs: map[string]*collabDoc{}}
	s.wg.Go(func() { s.read(st, e) })
	return e.write(st.Context(), st)
}

// read handles the stream's client events in order until Recv fails.
func (s *collabServer) read(st collabStream, e *editor) {
	for {
		ev, err := st.Recv()
		if err != nil {
			s.mu.Lock()
			for name, d := range e.docs {
				delete(d.editors, e)
				delete(e.docs, name)
			}
			s.mu.Unlock()
			if err == io.EOF {
				close(e.out) // nobody pushes to e any more: it is in no document
			}
			return
		}
		s.handle(e, ev)
	}
}

// push queues ev without waiting: an editor whose queue is full is a slow
// consumer, ended with RESOURCE_EXHAUSTED, and gets nothing more.
func (e *editor) push(ev *collabv1.ServerEvent) {
	select {
	case <-e.kicked:
		return
	default:
	}
	select {
	case e.out <- ev:
	default:
		e.once.Do(func() { close(e.kicked) })
	}
}

// write sends queued events until the queue is closed and empty (nil), the
// editor is kicked, a Send fails or ctx ends.
func (e *editor) write(ctx context.Context, st collabStream) error {
	kickErr := status.Errorf(codes.ResourceExhausted, "slow consumer: more than %d events queued for this stream", editorQueue)
	for {
		// A kick wins over whatever is still queued.
		select {
		case <-e.kicked:
			return kickErr
		default:
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-e.kicked:
			return kickErr
		case ev, ok := <-e.out:
			if !ok {
				return nil
			}
			if err := st.Send(ev); err != nil {
				return err
			}
		}
	}
}

// handle answers one client event; problems are Error events.
func (s *collabServer) handle(e *editor, ev *collabv1.ClientEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch c := ev.Event.(type) {
	case *collabv1.ClientEvent_Open:
		s.open(e, c.Open)
	case *collabv1.ClientEvent_Close:
		if d := e.docs[c.Close.Document]; d != nil {
			delete(d.editors, e)
			delete(e.docs, d.name)
		}
		e.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Closed{Closed: &collabv1.Closed{Document: c.Close.Document}}})
	case *collabv1.ClientEvent_Submit:
		s.submit(e, c.Submit)
	case *collabv1.ClientEvent_Cursor:
		// Cursors are optional; this server relays none.
	default:
		e.push(collabError(codes.InvalidArgument, "empty client event", "event", "", nil))
	}
}

// open subscribes e to a document and sends its snapshot (mu held). A
// from_version is not honoured: the snapshot says so.
func (s *collabServer) open(e *editor, o *collabv1.Open) {
	if !validRoom(o.Document) {
		e.push(collabError(codes.InvalidArgument, "document must be 1-64 characters of [A-Za-z0-9._-]", "open.document", o.Document, nil))
		return
	}
	d := s.docs[o.Document]
	if d == nil {
		d = &collabDoc{name: o.Document, seen: map[string]uint64{}, editors: map[*editor]bool{}}
		s.docs[o.Document] = d
	}
	d.editors[e] = true
	e.docs[d.name] = d
	e.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Opened{Opened: &collabv1.Opened{
		Document: d.name, Version: d.version, Snapshot: true, Text: d.text, VersionNotRetained: o.FromVersion != nil}}})
}

// submit transforms, commits, acks and broadcasts one op (mu held).
func (s *collabServer) submit(e *editor, m *collabv1.Submit) {
	d := e.docs[m.Document]
	if d == nil {
		e.push(collabError(codes.FailedPrecondition, "open the document first", "submit.document", m.Document, m))
		return
	}
	key := m.ClientId + "/" + strconv.FormatUint(m.ClientSeq, 10)
	if v, ok := d.seen[key]; ok {
		e.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Ack{Ack: &collabv1.Ack{Document: d.name, ClientId: m.ClientId,
			ClientSeq: m.ClientSeq, Version: v, Duplicate: true, ClientSentUnixNanos: m.ClientSentUnixNanos}}})
		return
	}
	base := m.BaseVersion
	if base > d.version {
		e.push(collabError(codes.FailedPrecondition, fmt.Sprintf("base version %d is ahead of the document's version %d", base, d.version), "submit.base_version", d.name, m))
		return
	}
	if base < d.dropped {
		e.push(collabError(codes.FailedPrecondition, fmt.Sprintf("base version %d too old (the oldest kept is %d), reopen", base, d.dropped), "submit.base_version", d.name, m))
		return
	}
	// i: the first log entry committed after base.
	i := len(d.log)
	for i > 0 && d.log[i-1].version > base {
		i--
	}
	op := opFromProto(m.Op)
	for _, c := range d.log[i:] {
		var err error
		if op, _, err = ot.Transform(op, c.op, ot.Right); err != nil {
			e.push(collabError(codes.InvalidArgument, fmt.Sprintf("op does not fit version %d: %v", base, err), "submit.op", d.name, m))
			return
		}
	}
	text, err := ot.Apply(d.text, op)
	if err != nil {
		e.push(collabError(codes.InvalidArgument, fmt.Sprintf("op does not fit version %d: %v", base, err), "submit.op", d.name, m))
		return
	}
	d.commits++
	nth := d.commits%defectEvery == 0
	d.version++
	if nth && s.defect == CollabSkipVersion {
		d.version++ // defect: CollabSkipVersion (no op ever holds the version before this one)
	}
	d.text = text
	d.log = append(d.log, committed{version: d.version, op: op})
	if n := len(d.log) - keepOps; n > keepOps/4 {
		d.dropped = d.log[n-1].version
		d.log = append(d.log[:0:0], d.log[n:]...)
	}
	d.seen[key] = d.version
	e.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Ack{Ack: &collabv1.Ack{Document: d.name, ClientId: m.ClientId,
		ClientSeq: m.ClientSeq, Version: d.version, ClientSentUnixNanos: m.ClientSentUnixNanos}}})
	ev := &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Op{Op: &collabv1.RemoteOp{Document: d.name, Version: d.version,
		ClientId: m.ClientId, ClientSeq: m.ClientSeq, Author: e.user, Op: opToProto(op),
		ServerUnixNanos: time.Now().UnixNano(), ClientSentUnixNanos: m.ClientSentUnixNanos}}}
	switch {
	case nth && s.defect == CollabAckNeverBroadcast:
		return // defect: CollabAckNeverBroadcast (acked and committed, never sent to the others)
	case nth && s.defect == CollabSwapTwo:
		s.flushHeld(d) // a held op is overtaken only once
		// defect: CollabSwapTwo (held until the next op has been broadcast)
		h := &heldOp{ev: ev, author: e}
		d.held = h
		s.wg.Go(func() {
			t := time.NewTimer(swapWait)
			defer t.Stop()
			select {
			case <-t.C:
				s.mu.Lock()
				if d.held == h {
					s.flushHeld(d)
				}
				s.mu.Unlock()
			case <-s.stop:
			}
		})
		return
	}
	d.broadcast(ev, e)
	if nth && s.defect == CollabBroadcastTwice {
		d.broadcast(ev, e) // defect: CollabBroadcastTwice (the same op, same version, again)
	}
	s.flushHeld(d)
}

// flushHeld broadcasts the op CollabSwapTwo holds, if any (mu held).
func (s *collabServer) flushHeld(d *collabDoc) {
	if h := d.held; h != nil {
		d.held = nil
		d.broadcast(h.ev, h.author)
	}
}

// broadcast queues ev for every editor of d but author (mu held).
func (d *collabDoc) broadcast(ev *collabv1.ServerEvent, author *editor) {
	for o := range d.editors {
		if o != author {
			o.push(ev)
		}
	}
}

func collabError(code codes.Code, msg, field, doc string, m *collabv1.Submit) *collabv1.ServerEvent {
	e := &collabv1.Error{Code: uint32(code), Message: msg, Field: field, Document: doc}
	if m != nil {
		e.ClientId, e.ClientSeq = m.ClientId, m.ClientSeq
	}
	return &collabv1.ServerEvent{Event: &collabv1.ServerEvent_Error{Error: e}}
}

func opFromProto(p *collabv1.Operation) ot.Op {
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

func opToProto(op ot.Op) *collabv1.Operation {
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
