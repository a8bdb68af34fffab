package broken

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// Limits of the corpus chat server (the same rate as the reference's
// defaults, so one scenario's fairness parameters fit both).
const (
	// sendRate and sendBurst are the per-user token bucket for Sends.
	sendRate  = 50
	sendBurst = 100
	// queueLen bounds each subscriber's queue of events; one that
	// overflows ends that stream with RESOURCE_EXHAUSTED.
	queueLen = 256
	// maxBody bounds Send.body in bytes (the reference's default limit).
	maxBody = 4096
	// dropAfter is how many messages of a room DropSubscription delivers.
	dropAfter = 20
)

type chatStream = grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]

// chatServer is the corpus chat server: rooms in memory, one total order
// per room assigned under the room's lock, one bounded queue and one
// writer per stream. Its handler goroutine is the stream's writer; a reader
// goroutine per stream handles client events and ends when the stream does.
type chatServer struct {
	chatv1.UnimplementedChatServiceServer
	defect ChatDefect
	// endDelay: how long a stream whose client half-closed stays open
	// (out of every room, so fed nothing) before it ends with OK
	// (StartChatSlowEnd; 0 = at once).
	endDelay time.Duration
	// replayPace: a resume's replay goes out one message per replayPace,
	// and nothing more once the client half-closed (StartChatPacedReplay;
	// 0 = the replay in one batch, and what is queued always written).
	replayPace time.Duration
	// stop is closed by Stop; goroutines leaked by LeakPerStream wait on it.
	stop chan struct{}
	// wg counts readers and leaked goroutines; Stop waits for them.
	wg sync.WaitGroup

	mu      sync.Mutex // guards rooms, limits and streams
	rooms   map[string]*room
	limits  map[string]*rate.Limiter
	streams int
}

// StartChat serves the corpus chat server with defect d (None: the correct
// variant) on free loopback ports.
func StartChat(d ChatDefect) (*Server, error) { return startChat(&chatServer{defect: d}) }

// StartChatSlowEnd serves the correct chat variant, except that a stream
// whose client half-closed ends only after delay: it leaves every room at
// the client's io.EOF, as the correct variant does, so nothing acked after
// that reaches it, and then waits (or until Stop) before it ends with OK.
// Within the client's close grace that is no defect: a check must not blame
// it (the member said it was done at its CloseSend).
func StartChatSlowEnd(delay time.Duration) (*Server, error) {
	return startChat(&chatServer{endDelay: delay})
}

// StartChatPacedReplay serves the correct chat variant, except that a
// resume's replay goes out one message per pace, and a stream whose client
// half-closed is fed nothing more (the rest of a replay under way included)
// before it ends with OK. A replay its client cut short so is no false
// claim of completeness: a check must not blame it.
func StartChatPacedReplay(pace time.Duration) (*Server, error) {
	return startChat(&chatServer{replayPace: pace})
}

func startChat(s *chatServer) (*Server, error) {
	s.stop, s.rooms, s.limits = make(chan struct{}), map[string]*room{}, map[string]*rate.Limiter{}
	srv, err := serve("chat "+s.defect.String(), func(gs *grpc.Server) { chatv1.RegisterChatServiceServer(gs, s) },
		func() { close(s.stop) })
	if err != nil {
		return nil, err
	}
	srv.OnStop(s.wg.Wait)
	return srv, nil
}

// Connect serves one stream: this goroutine writes, a reader goroutine
// handles client events. On the client's io.EOF the reader leaves every
// room and closes the queue; the writer sends what is queued and the
// stream ends with nil. The reader ends when Recv fails, which it does
// as soon as this handler has returned.
func (s *chatServer) Connect(st chatStream) error {
	user, err := userOf(st.Context())
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.streams++
	odd := s.streams%2 == 0
	s.mu.Unlock()
	m := &member{user: user, st: st, odd: odd, direct: s.defect == BlockingBroadcast, reorder: s.defect == ReorderSome && odd, pace: s.replayPace,
		out: make(chan *chatv1.ServerEvent, queueLen), kicked: make(chan struct{}), rooms: map[string]*room{}}
	if s.defect == LeakPerStream {
		defer s.wg.Go(func() { <-s.stop }) // defect: LeakPerStream (one goroutine per ended stream, until Stop)
	}
	s.wg.Go(func() { s.read(m) })
	return m.write(st.Context())
}

// read handles the stream's client events in order until Recv fails. It
// receives raw bytes and decodes them itself: grpc-go answers a message its
// codec cannot decode with INTERNAL, the contract says INVALID_ARGUMENT.
func (s *chatServer) read(m *member) {
	var raw rawFrame
	for {
		err := m.st.RecvMsg(&raw)
		ev := &chatv1.ClientEvent{}
		if err == nil {
			if derr := proto.Unmarshal(raw.b, ev); derr != nil {
				m.cut(status.Errorf(codes.InvalidArgument, "undecodable message (%d bytes): %v", len(raw.b), derr))
				err = derr
			}
		}
		if err != nil {
			eof := err == io.EOF
			m.halfClosed.Store(eof) // before leaving: the writer feeds nothing more (StartChatPacedReplay)
			s.leaveAll(m)
			if eof {
				if s.endDelay > 0 {
					t := time.NewTimer(s.endDelay)
					select {
					case <-t.C:
					case <-s.stop:
						t.Stop()
					}
				}
				close(m.out) // nobody pushes to m any more: it is in no room
			}
			return
		}
		s.handle(m, ev)
	}
}

// rawFrame receives one message's bytes undecoded: a legacy message with
// its own Unmarshal, which the gRPC codec calls with the raw bytes.
type rawFrame struct{ b []byte }

func (*rawFrame) Reset()         {}
func (*rawFrame) String() string { return "rawFrame" }
func (*rawFrame) ProtoMessage()  {}

// Unmarshal keeps a copy of b (the codec reuses its buffer).
func (f *rawFrame) Unmarshal(b []byte) error {
	f.b = append(f.b[:0], b...)
	return nil
}

// handle answers one client event; problems are Error events.
func (s *chatServer) handle(m *member, ev *chatv1.ClientEvent) {
	switch e := ev.Event.(type) {
	case *chatv1.ClientEvent_Join:
		s.join(m, e.Join)
	case *chatv1.ClientEvent_Leave:
		if r := m.rooms[e.Leave.Room]; r != nil {
			r.leave(m)
			delete(m.rooms, e.Leave.Room)
		}
		m.push(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Left{Left: &chatv1.Left{Room: e.Leave.Room}}})
	case *chatv1.ClientEvent_Send:
		s.send(m, e.Send)
	case *chatv1.ClientEvent_Typing:
		// Typing indicators are optional; this server relays none.
	default:
		m.push(errorEvent(codes.InvalidArgument, "empty client event", "event", "", ""))
	}
}

// join subscribes m to a room, replaying what it missed when it resumes.
func (s *chatServer) join(m *member, j *chatv1.Join) {
	if !validRoom(j.Room) {
		m.push(errorEvent(codes.InvalidArgument, "room must be 1-64 characters of [A-Za-z0-9._-]", "join.room", j.Room, ""))
		return
	}
	if r := m.rooms[j.Room]; r != nil {
		r.leave(m)
	}
	r := s.room(j.Room)
	m.rooms[j.Room] = r
	r.join(s.defect, m, j.ResumeAfter)
}

// send checks one Send and publishes it.
func (s *chatServer) send(m *member, in *chatv1.Send) {
	r := m.rooms[in.Room]
	switch {
	case r == nil:
		m.push(errorEvent(codes.FailedPrecondition, "join the room first", "send.room", in.Room, in.ClientMsgId))
	case in.ClientMsgId == "" || len(in.ClientMsgId) > 128:
		m.push(errorEvent(codes.InvalidArgument, "client_msg_id must be 1-128 bytes", "send.client_msg_id", in.Room, in.ClientMsgId))
	case in.Body == "" || len(in.Body) > maxBody:
		m.push(errorEvent(codes.InvalidArgument, fmt.Sprintf("body must be 1-%d bytes", maxBody), "send.body", in.Room, in.ClientMsgId))
	case s.defect != NoRateLimit && !s.limiter(m.user).Allow(): // defect: NoRateLimit (never refuses)
		m.push(errorEvent(codes.ResourceExhausted, "over the send rate of 50 messages/s (burst 100)", "send", in.Room, in.ClientMsgId))
	default:
		r.publish(s.defect, m, in)
	}
}

// room returns the named room, creating it.
func (s *chatServer) room(name string) *room {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[name]
	if r == nil {
		r = &room{name: name, ids: map[string]uint64{}, members: map[*member]*sub{}}
		s.rooms[name] = r
	}
	return r
}

// limiter is user's token bucket, shared by all its streams: a reconnect
// buys no fresh burst.
func (s *chatServer) limiter(user string) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.limits[user]
	if l == nil {
		l = rate.NewLimiter(sendRate, sendBurst)
		s.limits[user] = l
	}
	return l
}

// leaveAll takes m out of every room (its stream is ending).
func (s *chatServer) leaveAll(m *member) {
	for name, r := range m.rooms {
		r.leave(m)
		delete(m.rooms, name)
	}
}

// userOf is the bearer token of the "authorization" metadata, taken as the
// user id (development auth, as the workshop servers do).
func userOf(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if u := strings.TrimPrefix(v, "Bearer "); u != "" && u != v {
			return u, nil
		}
	}
	return "", status.Error(codes.Unauthenticated, `missing "authorization: Bearer <token>" metadata`)
}

// validRoom reports whether name is 1-64 characters of [A-Za-z0-9._-].
func validRoom(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func errorEvent(code codes.Code, msg, field, room, id string) *chatv1.ServerEvent {
	return &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Error{Error: &chatv1.Error{
		Code: uint32(code), Message: msg, Field: field, Room: room, ClientMsgId: id}}}
}
