// Package leakychat is workshop exercise 1: a chat server that remembers
// every client forever.
//
// It speaks bidikit.chat.v1 well enough for the harness: rooms, per-room
// sequence numbers, acks. Read it as the student will: what happens to a
// client's entry, its heartbeat goroutine and its outbox once the client has
// gone?
package leakychat

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

// server holds every client and room. mu guards clients, rooms and the
// fields of each client; stop is closed when the whole server stops.
type server struct {
	chatv1.UnimplementedChatServiceServer
	stop chan struct{}

	mu      sync.Mutex
	nextID  int
	clients map[int]*client   // every client that ever connected
	rooms   map[string]uint64 // room -> last sequence number
}

// client is one connected stream. Its handler goroutine is the only one
// that calls Send; others append to outbox and poke wake.
type client struct {
	id       int
	user     string
	rooms    map[string]bool
	outbox   []*chatv1.ServerEvent // waiting to be sent, no limit
	wake     chan struct{}
	lastSeen time.Time
}

// Register adds the chat service to s. stop ends the server's background
// goroutines; call it when the gRPC server stops.
func Register(s *grpc.Server) (stop func()) {
	srv := &server{stop: make(chan struct{}), clients: map[int]*client{}, rooms: map[string]uint64{}}
	chatv1.RegisterChatServiceServer(s, srv)
	return sync.OnceFunc(func() { close(srv.stop) })
}

// Connect serves one client until it says goodbye or its stream breaks.
func (s *server) Connect(stream grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]) error {
	c := &client{user: userOf(stream.Context()), rooms: map[string]bool{}, wake: make(chan struct{}, 1)}
	s.mu.Lock()
	s.nextID++
	c.id = s.nextID
	s.clients[c.id] = c
	s.mu.Unlock()

	go s.heartbeat(c)

	in := make(chan *chatv1.ClientEvent)
	errc := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			in <- ev
		}
	}()
	for {
		select {
		case ev := <-in:
			s.handle(c, ev)
		case <-c.wake:
			s.flush(stream, c)
		case err := <-errc:
			s.flush(stream, c)
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// heartbeat keeps the client's lastSeen fresh, once a second.
func (s *server) heartbeat(c *client) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			c.lastSeen = now
			s.mu.Unlock()
		}
	}
}

// flush sends everything in the client's outbox.
func (s *server) flush(stream grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent], c *client) {
	s.mu.Lock()
	out := c.outbox
	c.outbox = nil
	s.mu.Unlock()
	for _, ev := range out {
		_ = stream.Send(ev) // the client is connected: what could go wrong?
	}
}

// push queues ev for c (mu held).
func (s *server) push(c *client, ev *chatv1.ServerEvent) {
	c.outbox = append(c.outbox, ev)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// handle applies one client event.
func (s *server) handle(c *client, ev *chatv1.ClientEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e := ev.Event.(type) {
	case *chatv1.ClientEvent_Join:
		room := e.Join.Room
		c.rooms[room] = true
		// No history is kept, so a resume cannot be complete.
		s.push(c, &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{Joined: &chatv1.Joined{
			Room: room, HeadSeq: s.rooms[room], ResumeComplete: e.Join.ResumeAfter == nil}}})
	case *chatv1.ClientEvent_Leave:
		delete(c.rooms, e.Leave.Room)
		s.push(c, &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Left{Left: &chatv1.Left{Room: e.Leave.Room}}})
	case *chatv1.ClientEvent_Send:
		m := e.Send
		if !c.rooms[m.Room] {
			s.push(c, &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Error{Error: &chatv1.Error{
				Code: uint32(codes.FailedPrecondition), Message: "join the room first", Field: "send.room",
				Room: m.Room, ClientMsgId: m.ClientMsgId}}})
			return
		}
		s.rooms[m.Room]++
		msg := &chatv1.Message{Room: m.Room, Seq: s.rooms[m.Room], Sender: c.user, ClientMsgId: m.ClientMsgId,
			SenderSeq: m.SenderSeq, Body: m.Body, ServerUnixNanos: time.Now().UnixNano(),
			ClientSentUnixNanos: m.ClientSentUnixNanos}
		for _, other := range s.clients {
			if other.rooms[m.Room] {
				s.push(other, &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: msg}})
			}
		}
		s.push(c, &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{
			Room: m.Room, ClientMsgId: m.ClientMsgId, Seq: msg.Seq, ServerUnixNanos: msg.ServerUnixNanos}}})
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
