package collab_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/internal/collab/ot"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/collab"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/store"
)

// server is one in-process collab server on 127.0.0.1:0.
type server struct {
	svc  *collab.Service
	st   store.Store
	addr string
	gs   *grpc.Server
}

// startServer starts svc's gRPC server; the returned stop drains, stops and
// closes it (idempotent).
func startServer(cfg collab.Config, st store.Store) (*server, func()) {
	GinkgoHelper()
	srv, stop, err := newServer(cfg, st, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	return srv, func() { Expect(stop()).To(Succeed()) }
}

// newServer is startServer without Gomega, for benchmarks.
func newServer(cfg collab.Config, st store.Store, logw io.Writer) (*server, func() error, error) {
	svc, err := collab.New(cfg, st, metrics.Discard(), slog.New(slog.NewTextHandler(logw, nil)))
	if err != nil {
		return nil, nil, err
	}
	srv, stop, err := serve(svc)
	if srv != nil {
		srv.st = st
	}
	return srv, stop, err
}

// startShared starts a collab server whose documents live in lg; stopped
// (drained, closed) at cleanup.
func startShared(cfg collab.Config, lg collab.SharedLog) *server {
	GinkgoHelper()
	svc, err := collab.NewShared(cfg, lg, metrics.Discard(), slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
	Expect(err).NotTo(HaveOccurred())
	srv, stop, err := serve(svc)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })
	return srv
}

// serve runs svc behind a gRPC server on 127.0.0.1:0 with development
// auth; stop drains it, stops the server and closes svc (idempotent).
func serve(svc *collab.Service) (*server, func() error, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	gs := grpc.NewServer(grpc.StreamInterceptor(auth.StreamInterceptor(auth.DevMode{})))
	svc.Register(gs)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		derr := svc.Drain(ctx)
		gs.Stop()
		<-served
		return errors.Join(derr, svc.Close())
	}
	return &server{svc: svc, addr: lis.Addr().String(), gs: gs}, stop, nil
}

// testConfig is DefaultConfig without a rate limit.
func testConfig() collab.Config {
	cfg := collab.DefaultConfig()
	cfg.SubmitRate = 0
	return cfg
}

// dial returns a client connection; closed by DeferCleanup.
func dial(addr string) *grpc.ClientConn {
	GinkgoHelper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cc.Close)
	return cc
}

func withUser(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+user)
}

// rawStream is a bare Edit stream with helpers for table specs.
type rawStream struct {
	collabv1.CollabService_EditClient
	cancel context.CancelFunc
}

func openStream(ctx context.Context, cc *grpc.ClientConn, user string) *rawStream {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(withUser(ctx, user))
	st, err := collabv1.NewCollabServiceClient(cc).Edit(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cancel)
	return &rawStream{CollabService_EditClient: st, cancel: cancel}
}

func (s *rawStream) open(doc, clientID string, from *uint64) {
	GinkgoHelper()
	Expect(s.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{
		Document: doc, ClientId: clientID, FromVersion: from}}})).To(Succeed())
}

func (s *rawStream) submit(doc, clientID string, seq, base uint64, o ot.Op) {
	GinkgoHelper()
	Expect(s.Send(submitEvent(doc, clientID, seq, base, o))).To(Succeed())
}

func submitEvent(doc, clientID string, seq, base uint64, o ot.Op) *collabv1.ClientEvent {
	return &collabv1.ClientEvent{Event: &collabv1.ClientEvent_Submit{Submit: &collabv1.Submit{
		Document: doc, ClientId: clientID, ClientSeq: seq, BaseVersion: base, Op: collab.ToProto(o),
		ClientSentUnixNanos: time.Now().UnixNano()}}}
}

func (s *rawStream) recv() *collabv1.ServerEvent {
	GinkgoHelper()
	ev, err := s.Recv()
	Expect(err).NotTo(HaveOccurred())
	return ev
}

// finish ends the stream the interop way and returns its final error
// (nil for a clean OK).
func (s *rawStream) finish() error {
	_ = s.CloseSend()
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// replayStore rebuilds a document's text from the store: its op log
// applied from the empty text (the store must retain the whole log).
func replayStore(st store.Store, doc string) (string, uint64) {
	GinkgoHelper()
	head, err := st.Head("collab/" + doc)
	Expect(err).NotTo(HaveOccurred())
	Expect(head.Oldest).To(BeNumerically("<=", 1), "the store dropped part of the log")
	rope := ot.NewRope("")
	var last uint64
	Expect(st.Range("collab/"+doc, 1, head.Last, func(r store.Record) error {
		rop := &collabv1.RemoteOp{}
		if err := proto.Unmarshal(r.Payload, rop); err != nil {
			return err
		}
		if r.Seq != last+1 || rop.GetVersion() != r.Seq {
			return fmt.Errorf("record %d after %d (payload version %d)", r.Seq, last, rop.GetVersion())
		}
		last = r.Seq
		o, err := collab.FromProto(rop.GetOp())
		if err != nil {
			return err
		}
		return rope.Apply(o)
	})).To(Succeed())
	return rope.String(), last
}

// editor is a Jupiter client (ot.js style): at most one op in flight, and
// later local edits composed into one buffered op; remote ops are
// transformed against both. Its methods
// run on the goroutine that owns it.
type editor struct {
	cc       *grpc.ClientConn
	user, id string
	doc      string

	stream  collabv1.CollabService_EditClient
	cancel  context.CancelFunc
	events  chan *collabv1.ServerEvent
	readErr chan error

	rope     *ot.Rope
	version  uint64
	pending  []ot.Op
	seqs     []uint64
	nextSeq  uint64
	inFlight bool
	dupAcks  int
	acked    int // own ops known committed (acked, or seen in a replay)
}

func newEditor(cc *grpc.ClientConn, user, id, doc string) *editor {
	return &editor{cc: cc, user: user, id: id, doc: doc, nextSeq: 1, rope: ot.NewRope("")}
}

// text is the editor's replica.
func (e *editor) text() string { return e.rope.String() }

// connect opens a stream and the document (from the known version when
// reconnecting) and processes events until Opened and its replay are in.
func (e *editor) connect(ctx context.Context, from *uint64) error {
	sctx, cancel := context.WithCancel(withUser(ctx, e.user))
	st, err := collabv1.NewCollabServiceClient(e.cc).Edit(sctx)
	if err != nil {
		cancel()
		return err
	}
	e.stream, e.cancel = st, cancel
	e.events, e.readErr = make(chan *collabv1.ServerEvent, 64), make(chan error, 1)
	go func(events chan<- *collabv1.ServerEvent, errc chan<- error) {
		for {
			ev, err := st.Recv()
			if err != nil {
				errc <- err
				close(events)
				return
			}
			select {
			case events <- ev:
			case <-sctx.Done():
				errc <- sctx.Err()
				close(events)
				return
			}
		}
	}(e.events, e.readErr)
	if err := st.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{
		Document: e.doc, ClientId: e.id, FromVersion: from}}}); err != nil {
		return err
	}
	for {
		ev, err := e.next(ctx)
		if err != nil {
			return err
		}
		if err := e.handle(ev); err != nil {
			return err
		}
		if o := ev.GetOpened(); o != nil {
			if from != nil && !o.GetSnapshot() {
				// Replayed ops follow; handle them as they come.
				for e.version < o.GetVersion() {
					ev, err := e.next(ctx)
					if err != nil {
						return err
					}
					if err := e.handle(ev); err != nil {
						return err
					}
				}
			}
			return nil
		}
	}
}

// disconnect drops the stream abruptly (no half-close).
func (e *editor) disconnect() {
	e.cancel()
	for range e.events {
	}
	e.inFlight = false
}

// close ends the stream the interop way.
func (e *editor) close() error {
	_ = e.stream.CloseSend()
	for range e.events {
	}
	err := <-e.readErr
	e.cancel()
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

func (e *editor) next(ctx context.Context) (*collabv1.ServerEvent, error) {
	select {
	case ev, ok := <-e.events:
		if !ok {
			return nil, fmt.Errorf("editor %s: stream ended: %w", e.id, <-e.readErr)
		}
		return ev, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// edit applies a local op and queues it for the server.
func (e *editor) edit(o ot.Op) error {
	err := e.rope.Apply(o)
	if err != nil {
		return err
	}
	if l := len(e.pending); l == 0 || l == 1 && e.seqs[0] != 0 {
		e.pending = append(e.pending, o)
		e.seqs = append(e.seqs, 0)
	} else if e.pending[l-1], err = ot.Compose(e.pending[l-1], o); err != nil {
		return err
	}
	return e.flush()
}

// flush sends the first pending op when nothing is in flight, numbering it
// on its first send (a resend keeps its number).
func (e *editor) flush() error {
	if e.inFlight || len(e.pending) == 0 {
		return nil
	}
	if e.seqs[0] == 0 {
		e.seqs[0] = e.nextSeq
		e.nextSeq++
	}
	e.inFlight = true
	return e.stream.Send(submitEvent(e.doc, e.id, e.seqs[0], e.version, e.pending[0]))
}

// resend sends the first pending op again (same seq, its original base is
// gone so the current version is used: it was transformed to it).
func (e *editor) resend() error {
	e.inFlight = false
	return e.flush()
}

func (e *editor) handle(ev *collabv1.ServerEvent) error {
	switch x := ev.GetEvent().(type) {
	case *collabv1.ServerEvent_Opened:
		if x.Opened.GetSnapshot() {
			if len(e.pending) > 0 || e.version > 0 && x.Opened.GetVersionNotRetained() {
				return fmt.Errorf("editor %s: got a snapshot while holding pending ops", e.id)
			}
			e.rope, e.version = ot.NewRope(x.Opened.GetText()), x.Opened.GetVersion()
		}
	case *collabv1.ServerEvent_Ack:
		a := x.Ack
		if len(e.seqs) == 0 || a.GetClientSeq() != e.seqs[0] {
			if a.GetDuplicate() {
				e.dupAcks++
				return nil
			}
			return fmt.Errorf("editor %s: ack for seq %d, pending %v", e.id, a.GetClientSeq(), e.seqs)
		}
		if a.GetDuplicate() {
			e.dupAcks++
		}
		if a.GetVersion() != e.version+1 {
			return fmt.Errorf("editor %s: ack at version %d, expected %d", e.id, a.GetVersion(), e.version+1)
		}
		e.pending, e.seqs = e.pending[1:], e.seqs[1:]
		e.acked++
		e.version = a.GetVersion()
		e.inFlight = false
		return e.flush()
	case *collabv1.ServerEvent_Op:
		r := x.Op
		if r.GetVersion() <= e.version {
			return nil // already have it (a replay overlapping what we saw)
		}
		if r.GetVersion() != e.version+1 {
			return fmt.Errorf("editor %s: remote op %d after version %d", e.id, r.GetVersion(), e.version)
		}
		if r.GetClientId() == e.id {
			// Our own op, sent on an earlier stream, seen in a replay or
			// live after a reconnect (committed through the old stream or
			// instance): it is acked.
			if len(e.seqs) == 0 || r.GetClientSeq() != e.seqs[0] {
				return fmt.Errorf("editor %s: own op seq %d replayed, pending %v", e.id, r.GetClientSeq(), e.seqs)
			}
			e.pending, e.seqs = e.pending[1:], e.seqs[1:]
			e.acked++
			e.version = r.GetVersion()
			e.inFlight = false
			return e.flush()
		}
		o, err := collab.FromProto(r.GetOp())
		if err != nil {
			return err
		}
		for i := range e.pending {
			if e.pending[i], o, err = ot.Transform(e.pending[i], o, ot.Right); err != nil {
				return fmt.Errorf("editor %s: %w", e.id, err)
			}
		}
		if err = e.rope.Apply(o); err != nil {
			return fmt.Errorf("editor %s applying version %d: %w", e.id, r.GetVersion(), err)
		}
		e.version = r.GetVersion()
	case *collabv1.ServerEvent_Error:
		return fmt.Errorf("editor %s: unexpected error event %v", e.id, x.Error)
	}
	return nil
}

// settle processes events until nothing is pending and the editor has seen
// version want.
func (e *editor) settle(ctx context.Context, want uint64) error {
	if err := e.flush(); err != nil {
		return err
	}
	for len(e.pending) > 0 || e.version < want {
		ev, err := e.next(ctx)
		if err != nil {
			return fmt.Errorf("editor %s settling at version %d with ops %v pending (want version %d): %w", e.id, e.version, e.seqs, want, err)
		}
		if err := e.handle(ev); err != nil {
			return err
		}
	}
	return nil
}

// convergeEditors runs four Jupiter editors of document "shared", 120
// random edits each with random delays, each now and then dropping its
// connection and resending after reconnecting. Editor i starts on ccs[i mod
// n] and every reconnect moves it to the next conn (another instance when
// the conns reach several). It checks every op committed exactly once and
// every replica equals svc's text, and returns that text and version. head,
// when not nil, is the newest version anywhere (the shared log's), which svc
// is waited for.
func convergeEditors(ctx context.Context, seed uint64, ccs []*grpc.ClientConn, svc *collab.Service, head func() uint64) (string, uint64) {
	GinkgoHelper()
	const editors, edits = 4, 120
	eds := make([]*editor, editors)
	for i := range eds {
		eds[i] = newEditor(ccs[i%len(ccs)], fmt.Sprintf("user%d", i), fmt.Sprintf("client%d", i), "shared")
		Expect(eds[i].connect(ctx, nil)).To(Succeed())
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, e := range eds {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		g.Go(func() (err error) {
			step, hop := 0, i
			defer func() {
				if err != nil {
					err = fmt.Errorf("editor %d step %d: %w", i, step, err)
				}
			}()
			for ; step < edits; step++ {
				if err := e.edit(randEdit(r, e.rope.Len())); err != nil {
					return err
				}
				// Take in whatever arrived within a short random delay.
				deadline := time.After(time.Duration(r.IntN(3000)) * time.Microsecond)
			drain:
				for {
					select {
					case ev, ok := <-e.events:
						if !ok {
							return fmt.Errorf("editor %s: stream ended: %w", e.id, <-e.readErr)
						}
						if err := e.handle(ev); err != nil {
							return err
						}
					case <-deadline:
						break drain
					case <-gctx.Done():
						return gctx.Err()
					}
				}
				if r.IntN(25) == 0 { // drop the connection and come back, elsewhere if there is one
					e.disconnect()
					hop++
					e.cc = ccs[hop%len(ccs)]
					if err := e.connect(ctx, u64(e.version)); err != nil {
						return err
					}
					if err := e.resend(); err != nil {
						return err
					}
				}
			}
			sctx, cancel := context.WithTimeout(gctx, 20*time.Second)
			defer cancel()
			return e.settle(sctx, 0)
		})
	}
	Expect(g.Wait()).To(Succeed(), "seed %d", seed)
	var text string
	var version uint64
	last := uint64(0)
	if head != nil {
		last = head()
	}
	Eventually(func() (uint64, error) { // svc may still be applying the others' last ops
		var err error
		text, version, err = svc.Text("shared")
		return version, err
	}).WithContext(ctx).Should(BeNumerically(">=", last))
	var wg sync.WaitGroup
	errs := make([]error, editors)
	for i, e := range eds {
		wg.Go(func() { errs[i] = e.settle(ctx, version) })
	}
	wg.Wait()
	acked := 0
	for _, e := range eds {
		acked += e.acked
	}
	Expect(version).To(Equal(uint64(acked)), "every op committed exactly once")
	for i, e := range eds {
		Expect(errs[i]).NotTo(HaveOccurred())
		Expect(e.text()).To(Equal(text), "editor %d, seed %d", i, seed)
		Expect(e.version).To(Equal(version))
		Expect(e.close()).To(Succeed())
	}
	return text, version
}
