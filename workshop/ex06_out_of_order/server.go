// Package outoforder is workshop exercise 6: a chat server whose broadcast
// never waits for anyone, and so delivers messages out of order.
//
// It is the fix many of us write after exercise 4: the broadcast no longer
// calls Send with the room lock held. It starts one goroutine per delivery,
// and a mutex per member makes sure no two of them write to one stream at
// once. Every message is numbered once, under one lock, and reaches every
// member exactly once. Read it as the student will: when two goroutines
// wait for the same member's mutex, which one gets it first?
package outoforder

import (
	"context"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

type stream = grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]

// server holds the rooms. mu guards rooms, their members and seqs, and
// each member's rooms. Nobody calls Send with mu held, except to answer a
// join (so that Joined goes out before the member's first message).
type server struct {
	chatv1.UnimplementedChatServiceServer

	mu    sync.Mutex
	rooms map[string]*room
}

type room struct {
	seq     uint64
	members map[*member]bool
}

// member is one connected stream. sendMu is held around every Send on it
// (grpc-go forbids two goroutines sending on one stream at once); inflight
// counts the goroutines still delivering to it, so that Connect can wait
// for them before it returns.
type member struct {
	user     string
	stream   stream
	rooms    map[string]bool
	sendMu   sync.Mutex
	inflight sync.WaitGroup
}

// Register adds the chat service to s. It starts no goroutines of its own:
// the delivery goroutines end with their streams.
func Register(s *grpc.Server) (stop func()) {
	chatv1.RegisterChatServiceServer(s, &server{rooms: map[string]*room{}})
	return func() {}
}

// Connect serves one member until it says goodbye or its stream breaks,
// then waits for the deliveries still on their way to it.
func (s *server) Connect(st stream) error {
	m := &member{user: userOf(st.Context()), stream: st, rooms: map[string]bool{}}
	defer m.inflight.Wait()
	defer s.leaveAll(m)
	for {
		ev, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		s.handle(m, ev)
	}
}

// send writes ev to m's stream, one goroutine at a time. It blocks while
// another goroutine sends to m, and while m's flow-control window is full.
func (m *member) send(ev *chatv1.ServerEvent) {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	_ = m.stream.Send(ev)
}

// handle applies one client event from m.
func (s *server) handle(m *member, ev *chatv1.ClientEvent) {
	switch e := ev.Event.(type) {
	case *chatv1.ClientEvent_Join:
		s.mu.Lock()
		defer s.mu.Unlock()
		r := s.rooms[e.Join.Room]
		if r == nil {
			r = &room{members: map[*member]bool{}}
			s.rooms[e.Join.Room] = r
		}
		r.members[m] = true
		m.rooms[e.Join.Room] = true
		m.send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{Joined: &chatv1.Joined{
			Room: e.Join.Room, HeadSeq: r.seq, ResumeComplete: e.Join.ResumeAfter == nil}}})
	case *chatv1.ClientEvent_Leave:
		s.mu.Lock()
		s.leave(m, e.Leave.Room)
		s.mu.Unlock()
		m.send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Left{Left: &chatv1.Left{Room: e.Leave.Room}}})
	case *chatv1.ClientEvent_Send:
		in := e.Send
		s.mu.Lock()
		r := s.rooms[in.Room]
		if r == nil || !r.members[m] {
			s.mu.Unlock()
			m.send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Error{Error: &chatv1.Error{
				Code: uint32(codes.FailedPrecondition), Message: "join the room first", Field: "send.room",
				Room: in.Room, ClientMsgId: in.ClientMsgId}}})
			return
		}
		r.seq++
		msg := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: &chatv1.Message{
			Room: in.Room, Seq: r.seq, Sender: m.user, ClientMsgId: in.ClientMsgId, SenderSeq: in.SenderSeq,
			Body: in.Body, ServerUnixNanos: time.Now().UnixNano(), ClientSentUnixNanos: in.ClientSentUnixNanos}}}
		for other := range r.members {
			// One goroutine per delivery: a slow reader now only slows
			// down its own goroutines, never the room (exercise 4).
			other.inflight.Go(func() { other.send(msg) })
		}
		seq := r.seq
		s.mu.Unlock()
		m.send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{
			Room: in.Room, ClientMsgId: in.ClientMsgId, Seq: seq, ServerUnixNanos: time.Now().UnixNano()}}})
	}
}

// leave takes m out of one room (mu held).
func (s *server) leave(m *member, name string) {
	if r := s.rooms[name]; r != nil {
		delete(r.members, m)
	}
	delete(m.rooms, name)
}

// leaveAll takes m out of every room it joined (the stream has ended):
// no new delivery to m starts after it.
func (s *server) leaveAll(m *member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range m.rooms {
		s.leave(m, name)
	}
}

// userOf is the bearer token, taken as the user id (development auth).
func userOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) > 0 {
		return strings.TrimPrefix(v[0], "Bearer ")
	}
	return "anonymous"
}
