// Package naiveeditor is workshop exercise 3: a collaborative editor that
// applies every operation to the newest text, whatever version it was made
// against.
//
// Versions are numbered, acks and remote operations flow, nothing crashes.
// Read it as the student will: what does an operation made against version
// 5 mean when the server is already at version 7?
package naiveeditor

import (
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
)

// server holds the documents; mu guards docs and everything inside them.
type server struct {
	collabv1.UnimplementedCollabServiceServer

	mu   sync.Mutex
	docs map[string]*document
}

type document struct {
	text    []rune
	version uint64
	editors map[*editor]bool
}

// editor is one stream; out is drained by the stream's writer goroutine.
type editor struct {
	user string
	out  chan *collabv1.ServerEvent
}

// Register adds the collab service to s. It starts no goroutines of its
// own, so stop has nothing to do.
func Register(s *grpc.Server) (stop func()) {
	collabv1.RegisterCollabServiceServer(s, &server{docs: map[string]*document{}})
	return func() {}
}

// errDone ends the errgroup when the client said goodbye (io.EOF).
var errDone = errors.New("client said goodbye")

// Edit serves one editor: a reader and a writer joined by an errgroup.
func (s *server) Edit(stream grpc.BidiStreamingServer[collabv1.ClientEvent, collabv1.ServerEvent]) error {
	e := &editor{user: "anonymous", out: make(chan *collabv1.ServerEvent, 4096)}
	if md, ok := metadata.FromIncomingContext(stream.Context()); ok && len(md.Get("authorization")) > 0 {
		e.user = strings.TrimPrefix(md.Get("authorization")[0], "Bearer ")
	}
	defer s.closeAll(e)
	g, ctx := errgroup.WithContext(stream.Context())
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case ev := <-e.out:
				if err := stream.Send(ev); err != nil {
					return err
				}
			}
		}
	})
	g.Go(func() error {
		for {
			in, err := stream.Recv()
			if err == io.EOF {
				return errDone
			}
			if err != nil {
				return err
			}
			s.handle(e, in)
		}
	})
	if err := g.Wait(); err != errDone {
		return err
	}
	return nil
}

func (e *editor) send(ev *collabv1.ServerEvent) {
	select {
	case e.out <- ev:
	default: // far behind: drop it
	}
}

func (s *server) handle(e *editor, in *collabv1.ClientEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev := in.Event.(type) {
	case *collabv1.ClientEvent_Open:
		d := s.docs[ev.Open.Document]
		if d == nil {
			d = &document{editors: map[*editor]bool{}}
			s.docs[ev.Open.Document] = d
		}
		d.editors[e] = true
		e.send(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Opened{Opened: &collabv1.Opened{
			Document: ev.Open.Document, Version: d.version, Snapshot: true, Text: string(d.text),
			VersionNotRetained: ev.Open.FromVersion != nil}}})
	case *collabv1.ClientEvent_Close:
		if d := s.docs[ev.Close.Document]; d != nil {
			delete(d.editors, e)
		}
		e.send(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Closed{Closed: &collabv1.Closed{Document: ev.Close.Document}}})
	case *collabv1.ClientEvent_Submit:
		sub := ev.Submit
		d := s.docs[sub.Document]
		if d == nil || !d.editors[e] {
			return
		}
		// Apply the operation to the newest text.
		applied := apply(&d.text, sub.Op)
		d.version++
		e.send(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Ack{Ack: &collabv1.Ack{
			Document: sub.Document, ClientId: sub.ClientId, ClientSeq: sub.ClientSeq, Version: d.version,
			ClientSentUnixNanos: sub.ClientSentUnixNanos}}})
		op := &collabv1.RemoteOp{Document: sub.Document, Version: d.version, ClientId: sub.ClientId,
			ClientSeq: sub.ClientSeq, Author: e.user, Op: applied, ServerUnixNanos: time.Now().UnixNano(),
			ClientSentUnixNanos: sub.ClientSentUnixNanos}
		for other := range d.editors {
			if other != e {
				other.send(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Op{Op: op}})
			}
		}
	}
}

// apply walks op over *text, changing it in place, and returns the
// operation as applied: retains, inserts and deletes that fit the text,
// plus a final retain of whatever op did not reach.
func apply(text *[]rune, op *collabv1.Operation) *collabv1.Operation {
	old := *text
	var out []rune
	res := &collabv1.Operation{}
	add := func(c *collabv1.Component) { res.Components = append(res.Components, c) }
	pos := 0
	for _, c := range op.GetComponents() {
		switch k := c.Kind.(type) {
		case *collabv1.Component_Retain:
			n := min(int(k.Retain), len(old)-pos)
			if n > 0 {
				out = append(out, old[pos:pos+n]...)
				pos += n
				add(&collabv1.Component{Kind: &collabv1.Component_Retain{Retain: uint32(n)}})
			}
		case *collabv1.Component_Insert:
			out = append(out, []rune(k.Insert)...)
			add(&collabv1.Component{Kind: &collabv1.Component_Insert{Insert: k.Insert}})
		case *collabv1.Component_Delete:
			n := min(int(k.Delete), len(old)-pos)
			if n > 0 {
				pos += n
				add(&collabv1.Component{Kind: &collabv1.Component_Delete{Delete: uint32(n)}})
			}
		}
	}
	if rest := len(old) - pos; rest > 0 {
		out = append(out, old[pos:]...)
		add(&collabv1.Component{Kind: &collabv1.Component_Retain{Retain: uint32(rest)}})
	}
	*text = out
	return res
}

// closeAll removes e from every document (the stream has ended).
func (s *server) closeAll(e *editor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.docs {
		delete(d.editors, e)
	}
}
