package chat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/store"
)

// testServer is one in-process gRPC server hosting a chat Service.
type testServer struct {
	addr string
	svc  *Service
	st   store.Store
	m    *metrics.Set
	srv  *grpc.Server
}

// testConfig is DefaultConfig with limits that stay out of the way.
func testConfig() Config {
	c := DefaultConfig()
	c.SendRate = 0 // unlimited
	return c
}

// startServer serves a new Service on 127.0.0.1:0 (st nil: a fresh Memory
// store) and registers its stop as a cleanup.
func startServer(cfg Config, st store.Store, acl ACL) *testServer {
	GinkgoHelper()
	ts := newTestServer(cfg, st, acl)
	DeferCleanup(ts.stop)
	return ts
}

func newTestServer(cfg Config, st store.Store, acl ACL) *testServer {
	if st == nil {
		st = store.NewMemory(cfg.History)
	}
	m := metrics.Discard()
	svc, err := New(cfg, st, m, acl, nil)
	if err != nil {
		panic(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer(grpc.StreamInterceptor(auth.StreamInterceptor(auth.DevMode{})))
	svc.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	return &testServer{addr: lis.Addr().String(), svc: svc, st: st, m: m, srv: srv}
}

func (ts *testServer) stop() {
	ts.srv.Stop()
	_ = ts.svc.Close()
}

// dial opens a client connection closed at cleanup.
func dial(addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	GinkgoHelper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cc.Close)
	return cc
}

func userCtx(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+user)
}

// tclient is a test chat client: one stream and a goroutine reading it into
// a log (batches flattened into Message events).
type tclient struct {
	user   string
	st     chatv1.ChatService_ConnectClient
	cancel context.CancelFunc

	reading sync.Once
	mu      sync.Mutex
	evs     []*chatv1.ServerEvent
	batches int
	done    chan struct{}
	err     error // the stream's end: nil for a clean EOF; set before done closes
}

// connect opens a stream for user on cc; reading starts unless noRead.
func connect(cc *grpc.ClientConn, user string) *tclient {
	GinkgoHelper()
	c := open(cc, user)
	c.startReading()
	return c
}

func open(cc *grpc.ClientConn, user string) *tclient {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(userCtx(context.Background(), user))
	st, err := chatv1.NewChatServiceClient(cc).Connect(ctx)
	Expect(err).NotTo(HaveOccurred())
	c := &tclient{user: user, st: st, cancel: cancel, done: make(chan struct{})}
	DeferCleanup(func() {
		cancel()
		c.startReading() // a reader that never read: drain until the cancel ends it
		<-c.done
	})
	return c
}

func (c *tclient) startReading() { c.reading.Do(func() { go c.readAll() }) }

func (c *tclient) readAll() {
	for {
		ev, err := c.st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			close(c.done)
			return
		}
		c.mu.Lock()
		if b := ev.GetBatch(); b != nil {
			c.batches++
			for _, m := range b.GetMessages() {
				c.evs = append(c.evs, &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: m}})
			}
		} else {
			c.evs = append(c.evs, ev)
		}
		c.mu.Unlock()
	}
}

func (c *tclient) send(ev *chatv1.ClientEvent) {
	GinkgoHelper()
	Expect(c.st.Send(ev)).To(Succeed())
}

// closeAndWait half-closes and reads to the end; returns the final error.
func (c *tclient) closeAndWait() error {
	GinkgoHelper()
	Expect(c.st.CloseSend()).To(Succeed())
	Eventually(c.done).Should(BeClosed())
	return c.final()
}

func (c *tclient) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *tclient) final() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *tclient) events() []*chatv1.ServerEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*chatv1.ServerEvent(nil), c.evs...)
}

func (c *tclient) messages(room string) []*chatv1.Message {
	var out []*chatv1.Message
	for _, ev := range c.events() {
		if m := ev.GetMessage(); m != nil && m.GetRoom() == room {
			out = append(out, m)
		}
	}
	return out
}

func (c *tclient) acks() []*chatv1.Ack {
	var out []*chatv1.Ack
	for _, ev := range c.events() {
		if a := ev.GetAck(); a != nil {
			out = append(out, a)
		}
	}
	return out
}

func (c *tclient) errs() []*chatv1.Error {
	var out []*chatv1.Error
	for _, ev := range c.events() {
		if e := ev.GetError(); e != nil {
			out = append(out, e)
		}
	}
	return out
}

func (c *tclient) joinedEvents() []*chatv1.Joined {
	var out []*chatv1.Joined
	for _, ev := range c.events() {
		if j := ev.GetJoined(); j != nil {
			out = append(out, j)
		}
	}
	return out
}

func (c *tclient) presences() []*chatv1.Presence {
	var out []*chatv1.Presence
	for _, ev := range c.events() {
		if p := ev.GetPresence(); p != nil {
			out = append(out, p)
		}
	}
	return out
}

func (c *tclient) typings() []*chatv1.TypingNotice {
	var out []*chatv1.TypingNotice
	for _, ev := range c.events() {
		if t := ev.GetTyping(); t != nil {
			out = append(out, t)
		}
	}
	return out
}

// join sends Join and waits for its Joined.
func (c *tclient) join(room string) *chatv1.Joined {
	GinkgoHelper()
	return c.joinFrom(room, nil)
}

func (c *tclient) joinFrom(room string, after *uint64) *chatv1.Joined {
	GinkgoHelper()
	n := len(c.joinedEvents())
	c.send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: room, ResumeAfter: after}}})
	Eventually(func() int { return len(c.joinedEvents()) }).Should(BeNumerically(">", n), "Joined for %s", room)
	return c.joinedEvents()[n]
}

func joinEv(room string) *chatv1.ClientEvent {
	return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: room}}}
}

func leaveEv(room string) *chatv1.ClientEvent {
	return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Leave{Leave: &chatv1.Leave{Room: room}}}
}

func typingEv(room string, active bool) *chatv1.ClientEvent {
	return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Typing{Typing: &chatv1.Typing{Room: room, Active: active}}}
}

func sendEv(room, id string, senderSeq uint64, body string) *chatv1.ClientEvent {
	return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
		Room: room, ClientMsgId: id, SenderSeq: senderSeq, Body: body}}}
}

func ptr[T any](v T) *T { return &v }

// checkOrder asserts msgs are seq 1..n without gaps and returns them.
func gapless(msgs []*chatv1.Message, from uint64) error {
	for i, m := range msgs {
		if want := from + uint64(i); m.GetSeq() != want {
			return fmt.Errorf("message %d of room %s has seq %d, want %d", i, m.GetRoom(), m.GetSeq(), want)
		}
	}
	return nil
}

// rawCodec sends and receives raw bytes on a chat stream (bad-input and fuzz
// tests): Marshal takes []byte, Unmarshal fills *[]byte.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T", v)
	}
	return b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*p = append((*p)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// rawStream is a chat stream speaking bytes.
type rawStream struct {
	cs     grpc.ClientStream
	cancel context.CancelFunc
}

func openRaw(ctx context.Context, cc *grpc.ClientConn, user string) (*rawStream, error) {
	ctx, cancel := context.WithCancel(userCtx(ctx, user))
	cs, err := cc.NewStream(ctx, &chatv1.ChatService_ServiceDesc.Streams[0],
		chatv1.ChatService_Connect_FullMethodName, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		cancel()
		return nil, err
	}
	return &rawStream{cs: cs, cancel: cancel}, nil
}

func (r *rawStream) send(b []byte) error { return r.cs.SendMsg(b) }

// recv returns the next event, or the stream's end (nil event, io.EOF or
// a status error).
func (r *rawStream) recv() (*chatv1.ServerEvent, error) {
	var b []byte
	if err := r.cs.RecvMsg(&b); err != nil {
		return nil, err
	}
	ev := &chatv1.ServerEvent{}
	if err := proto.Unmarshal(b, ev); err != nil {
		return nil, fmt.Errorf("server sent undecodable bytes: %w", err)
	}
	return ev, nil
}

func mustMarshal(ev *chatv1.ClientEvent) []byte {
	b, err := proto.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// gatedStore holds Appends until release, then commits them (and everything
// after) in order on the caller of release: like SQLite's writer goroutine,
// callbacks do not run inside Append.
type gatedStore struct {
	*store.Memory
	mu   sync.Mutex
	open bool
	held []heldAppend
}

type heldAppend struct {
	rec  store.Record
	done func(error)
}

func newGatedStore() *gatedStore { return &gatedStore{Memory: store.NewMemory(0)} }

func (g *gatedStore) Append(rec store.Record, done func(error)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open {
		g.Memory.Append(rec, done)
		return
	}
	g.held = append(g.held, heldAppend{rec, done})
}

func (g *gatedStore) pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

func (g *gatedStore) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = true
	for _, h := range g.held {
		g.Memory.Append(h.rec, h.done)
	}
	g.held = nil
}

// asyncStore commits on its own writer goroutine, in Append order, as the
// SQLite store does.
type asyncStore struct {
	*store.Memory
	ch   chan heldAppend
	done chan struct{}
}

func newAsyncStore() *asyncStore {
	a := &asyncStore{Memory: store.NewMemory(0), ch: make(chan heldAppend, 1024), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for h := range a.ch {
			a.Memory.Append(h.rec, h.done)
		}
	}()
	return a
}

func (a *asyncStore) Append(rec store.Record, done func(error)) { a.ch <- heldAppend{rec, done} }

func (a *asyncStore) Close() error {
	close(a.ch)
	<-a.done
	return a.Memory.Close()
}

// denyACL allows room "secret" to alice only.
type denyACL struct{}

func (denyACL) Allowed(room, user string) bool { return room != "secret" || user == "alice" }
