// Package blockingbroadcast is workshop exercise 4: a chat server whose
// broadcast waits for every member, one after the other.
//
// It is short and it is correct while every client reads quickly: one lock
// keeps the room order and makes sure no two goroutines write to one stream
// at once. Read it as the student will: what happens to everyone else while
// stream.Send waits for a member who reads one message a second?
package blockingbroadcast

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

// server holds the rooms. mu guards rooms and members, and every call to
// Send on any stream happens with mu held.
type server struct {
	chatv1.UnimplementedChatServiceServer

	mu    sync.Mutex
	rooms map[string]*room
}

type room struct {
	seq     uint64
	members map[*member]bool
}

type member struct {
	user   string
	stream stream
	rooms  map[string]bool
}

// Register adds the chat service to s. It starts no goroutines of its own.
func Register(s *grpc.Server) (stop func()) {
	chatv1.RegisterChatServiceServer(s, &server{rooms: map[string]*room{}})
	return func() {}
}

// Connect serves one member until it says goodbye or its stream breaks.
func (s *server) Connect(st stream) error {
	m := &member{user: userOf(st.Context()), stream: st, rooms: map[string]bool{}}
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

// handle applies one client event; answers and broadcasts are sent at once.
func (s *server) handle(m *member, ev *chatv1.ClientEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e := ev.Event.(type) {
	case *chatv1.ClientEvent_Join:
		r := s.rooms[e.Join.Room]
		if r == nil {
			r = &room{members: map[*member]bool{}}
			s.rooms[e.Join.Room] = r
		}
		r.members[m] = true
		m.rooms[e.Join.Room] = true
		_ = m.stream.Send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{Joined: &chatv1.Joined{
			Room: e.Join.Room, HeadSeq: r.seq, ResumeComplete: e.Join.ResumeAfter == nil}}})
	case *chatv1.ClientEvent_Leave:
		s.leave(m, e.Leave.Room)
		_ = m.stream.Send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Left{Left: &chatv1.Left{Room: e.Leave.Room}}})
	case *chatv1.ClientEvent_Send:
		in := e.Send
		r := s.rooms[in.Room]
		if r == nil || !r.members[m] {
			_ = m.stream.Send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Error{Error: &chatv1.Error{
				Code: uint32(codes.FailedPrecondition), Message: "join the room first", Field: "send.room",
				Room: in.Room, ClientMsgId: in.ClientMsgId}}})
			return
		}
		r.seq++
		msg := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: &chatv1.Message{
			Room: in.Room, Seq: r.seq, Sender: m.user, ClientMsgId: in.ClientMsgId, SenderSeq: in.SenderSeq,
			Body: in.Body, ServerUnixNanos: time.Now().UnixNano(), ClientSentUnixNanos: in.ClientSentUnixNanos}}}
		for other := range r.members {
			_ = other.stream.Send(msg)
		}
		_ = m.stream.Send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{
			Room: in.Room, ClientMsgId: in.ClientMsgId, Seq: r.seq, ServerUnixNanos: time.Now().UnixNano()}}})
	}
}

// leave takes m out of one room (mu held).
func (s *server) leave(m *member, name string) {
	if r := s.rooms[name]; r != nil {
		delete(r.members, m)
	}
	delete(m.rooms, name)
}

// leaveAll takes m out of every room it joined (the stream has ended).
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
