package chat

import (
	"context"
	"fmt"
	"net"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/internal/chattest"
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

// rawStream is a chat stream speaking bytes.
type rawStream struct {
	cs     grpc.ClientStream
	cancel context.CancelFunc
}

func openRaw(ctx context.Context, cc *grpc.ClientConn, user string) (*rawStream, error) {
	ctx, cancel := context.WithCancel(chattest.WithUser(ctx, user))
	cs, err := cc.NewStream(ctx, &chatv1.ChatService_ServiceDesc.Streams[0],
		chatv1.ChatService_Connect_FullMethodName, grpc.ForceCodec(chattest.RawCodec{}))
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
