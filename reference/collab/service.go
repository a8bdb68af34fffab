// Package collab is the reference collaborative-editing service
// (bidikit.collab.v1.CollabService): plain-text documents edited with
// server-ordered operational transformation (Jupiter / ShareDB style).
//
// Each open document is a doc actor (see doc) guarded by its own mutex; each
// stream is a conn with a receive loop (decodes client events, calls into
// the doc actors) and a send loop (drains the conn's bounded send queue).
// Committed operations are published from the store's commit callbacks, so
// editors only ever see durable versions, in version order.
package collab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"sync"
	"sync/atomic"
	"time"

	"github.com/bidikit/bidikit/reference/wire"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/ratelimit"
	"github.com/bidikit/bidikit/reference/sendq"
	"github.com/bidikit/bidikit/reference/service"
	"github.com/bidikit/bidikit/reference/store"
	"github.com/bidikit/bidikit/reference/validate"
)

const serviceLabel = "collab"

// maxClientIDLen bounds Open.client_id and Submit.client_id.
const maxClientIDLen = 128

var errShuttingDown = status.Error(codes.Unavailable, "server shutting down")

// Service is the collab service. Safe for concurrent use.
type Service struct {
	collabv1.UnimplementedCollabServiceServer

	cfg     Config
	store   store.Store
	metrics *metrics.Set
	log     *slog.Logger
	limiter *ratelimit.Limiter

	mu       sync.Mutex // guards docs, conns, draining
	docs     map[string]*doc
	conns    map[*conn]struct{}
	draining bool
	streams  sync.WaitGroup // one per running Edit handler

	// shared, when set, holds the documents instead of store (NewShared).
	shared SharedLog
	// appends counts the goroutines that hand SharedLog.Append outcomes to
	// their documents (see doc.appendShared); Close waits for them.
	appends sync.WaitGroup
}

var _ service.Service = (*Service)(nil)

// New returns the service over st (which the caller owns and closes after
// Close). m and log may be nil (metrics discarded, slog.Default).
func New(cfg Config, st store.Store, m *metrics.Set, log *slog.Logger) (*Service, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, errors.New("collab: a store is required")
	}
	return newService(cfg, st, nil, m, log)
}

func newService(cfg Config, st store.Store, lg SharedLog, m *metrics.Set, log *slog.Logger) (*Service, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if m == nil {
		m = metrics.Discard()
	}
	if log == nil {
		log = slog.Default()
	}
	return &Service{
		cfg: cfg, store: st, shared: lg, metrics: m, log: log,
		limiter: ratelimit.New(cfg.SubmitRate, cfg.SubmitBurst),
		docs:    map[string]*doc{}, conns: map[*conn]struct{}{},
	}, nil
}

// Name implements service.Service.
func (s *Service) Name() string { return collabv1.CollabService_ServiceDesc.ServiceName }

// Register implements service.Service.
func (s *Service) Register(g *grpc.Server) { collabv1.RegisterCollabServiceServer(g, s) }

// Drain implements service.Service: new streams are refused; each open
// stream waits for its in-flight commits, flushes its queue and ends with
// UNAVAILABLE "server shutting down". When ctx ends first, the remaining
// streams are cut at once and ctx's error is returned.
func (s *Service) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var shutdowns sync.WaitGroup
	for _, c := range conns {
		shutdowns.Go(func() { c.shutdown(ctx) })
	}
	done := make(chan struct{})
	go func() {
		s.streams.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for c := range s.conns {
			c.cancel(errShuttingDown)
		}
		s.mu.Unlock()
		<-done
	}
	shutdowns.Wait()
	return err
}

// Close implements service.Service: documents are forgotten and their
// shared-log feeds stopped. The store or shared log belongs to the caller.
func (s *Service) Close() error {
	s.mu.Lock()
	s.draining = true
	docs := s.docs
	s.docs = map[string]*doc{}
	s.mu.Unlock()
	for _, d := range docs {
		d.stopSharedFeed()
	}
	s.appends.Wait()
	return nil
}

// Text returns a document's text and version as applied in memory (ops
// whose commit is pending included), loading it from the store when it is
// not open. For tests and admin tools; it takes the document's lock.
func (s *Service) Text(name string) (string, uint64, error) {
	if err := validate.Name("document", name); err != nil {
		return "", 0, err
	}
	d := s.acquire(name)
	defer s.release(d)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(); err != nil {
		return "", 0, err
	}
	return d.rope.String(), d.version, nil
}

// acquire returns the document named name, creating its actor (loaded on
// first use); release must follow.
func (s *Service) acquire(name string) *doc {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[name]
	if d == nil || d.failed.Load() {
		d = newDoc(s, name)
		s.docs[name] = d
	}
	d.refs++
	return d
}

// release drops one reference; an unreferenced document with nothing
// waiting for commit is forgotten (it reloads from the store on next use).
func (s *Service) release(d *doc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.refs--
	if d.refs <= 0 && s.docs[d.name] == d && (d.failed.Load() || !d.pending()) {
		delete(s.docs, d.name)
		d.stopSharedFeed()
	}
}

// Edit implements the bidi RPC.
func (s *Service) Edit(stream grpc.BidiStreamingServer[collabv1.ClientEvent, collabv1.ServerEvent]) error {
	user, ok := auth.UserFrom(stream.Context())
	if !ok {
		return status.Error(codes.Unauthenticated, "no authenticated user on the stream")
	}
	c := &conn{svc: s, stream: stream, user: user, subs: map[string]*sub{},
		q: sendq.New[*collabv1.ServerEvent](s.cfg.QueueEvents, s.cfg.QueueBytes)}
	c.ctx, c.cancel = context.WithCancelCause(stream.Context())
	defer c.cancel(nil)
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return errShuttingDown
	}
	s.conns[c] = struct{}{}
	s.streams.Add(1)
	s.mu.Unlock()
	c.lim = s.limiter.Acquire(user)
	s.metrics.ActiveStreams.WithLabelValues(serviceLabel).Inc()
	defer func() {
		c.cleanup()
		s.limiter.Release(user)
		s.metrics.ActiveStreams.WithLabelValues(serviceLabel).Dec()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.streams.Done()
	}()
	return c.run()
}

// conn is one Edit stream. The receive loop owns strikes and is the only
// goroutine that opens subscriptions; subs is guarded by mu because the
// handler's clean-up may run while the receive loop is still unwinding.
type conn struct {
	svc    *Service
	stream grpc.BidiStreamingServer[collabv1.ClientEvent, collabv1.ServerEvent]
	user   string
	q      *sendq.Queue[*collabv1.ServerEvent]
	lim    *rate.Limiter
	ctx    context.Context
	cancel context.CancelCauseFunc

	inflight atomic.Int64 // this stream's ops appended but not yet committed
	draining atomic.Bool  // Drain closed the queue: end with UNAVAILABLE

	mu     sync.Mutex
	subs   map[string]*sub
	closed bool

	strikes int // consecutive rate-limited events; receive loop only
}

// push queues ev for the send loop without blocking; a full queue finishes
// it with ErrOverflow, which the send loop turns into RESOURCE_EXHAUSTED.
func (c *conn) push(ev *collabv1.ServerEvent) {
	if c.q.Push(ev, proto.Size(ev)) {
		c.svc.metrics.QueueDepth.WithLabelValues(serviceLabel).Inc()
	}
}

// fail ends the stream with code and msg.
func (c *conn) fail(code codes.Code, msg string) { c.cancel(status.Error(code, msg)) }

// run joins the receive loop (in an errgroup goroutine) and the send loop
// (on the handler goroutine). The send loop decides when the stream ends:
// it returns nil after a clean close (client half-close, queue flushed) or
// the first error of either loop, taken from the errgroup context's cause.
// A receive loop still blocked in Recv returns once the handler has
// returned and gRPC cancels the stream.
func (c *conn) run() error {
	g, gctx := errgroup.WithContext(c.ctx)
	g.Go(func() error { return c.recvLoop(gctx) })
	if err := c.sendLoop(gctx); err != nil {
		return err
	}
	return g.Wait()
}

func (c *conn) sendLoop(ctx context.Context) error {
	var batch []*collabv1.ServerEvent
	depth := c.svc.metrics.QueueDepth.WithLabelValues(serviceLabel)
	delivered := c.svc.metrics.Delivered.WithLabelValues(serviceLabel)
	for {
		var err error
		batch, err = c.q.Pop(ctx, batch[:0])
		depth.Sub(float64(len(batch)))
		for i, ev := range batch {
			if serr := c.stream.Send(ev); serr != nil {
				return serr
			}
			batch[i] = nil
			delivered.Inc()
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, sendq.ErrOverflow):
			c.svc.metrics.SlowConsumerCuts.WithLabelValues(serviceLabel).Inc()
			return status.Errorf(codes.ResourceExhausted,
				"slow consumer: editor %q fell behind by more than %d events or %d bytes in its send queue",
				c.user, c.svc.cfg.QueueEvents, c.svc.cfg.QueueBytes)
		case errors.Is(err, sendq.ErrClosed):
			if c.draining.Load() {
				return errShuttingDown
			}
			return nil
		default:
			return toStatus(context.Cause(ctx))
		}
	}
}

// toStatus turns a context cause into the status the stream ends with.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.FromContextError(err).Err()
}

func (c *conn) recvLoop(ctx context.Context) error {
	var frame wire.Frame
	for {
		ev := &collabv1.ClientEvent{}
		err := wire.Recv(c.stream, &frame, ev)
		if errors.Is(err, io.EOF) {
			// Clean half-close: let this stream's acks arrive, then flush.
			c.waitInflight(ctx)
			c.q.Close()
			return nil
		}
		if err != nil {
			if status.Code(err) == codes.InvalidArgument {
				c.svc.metrics.Rejected.WithLabelValues(serviceLabel, "message").Inc()
			}
			return err
		}
		if err := c.handle(ev); err != nil {
			return err
		}
	}
}

// waitInflight waits (polling, bounded by ctx) until every op this stream
// submitted has committed.
func (c *conn) waitInflight(ctx context.Context) {
	for c.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// shutdown is Drain's part for one stream.
func (c *conn) shutdown(ctx context.Context) {
	c.waitInflight(c.ctx)
	if ctx.Err() == nil {
		c.draining.Store(true)
		c.q.Close()
	}
}

// cleanup undoes everything the stream created. Runs on the handler
// goroutine once the send loop has returned.
func (c *conn) cleanup() {
	c.mu.Lock()
	c.closed = true
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for _, s := range subs {
		s.d.unsubscribe(s)
		c.svc.release(s.d)
	}
	c.q.Close()
	if n, _ := c.q.Len(); n > 0 {
		c.svc.metrics.QueueDepth.WithLabelValues(serviceLabel).Sub(float64(n))
	}
}

// reject queues an Error event and counts it.
func (c *conn) reject(e *collabv1.Error) {
	c.svc.metrics.Rejected.WithLabelValues(serviceLabel, e.Field).Inc()
	c.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Error{Error: e}})
}

// allow spends one rate-limit token; a stream that keeps flooding gets a
// fatal RESOURCE_EXHAUSTED.
func (c *conn) allow(kind string) (bool, error) {
	if c.lim.Allow() {
		c.strikes = 0
		return true, nil
	}
	c.strikes++
	c.svc.metrics.RateLimited.WithLabelValues(serviceLabel, kind).Inc()
	if c.strikes >= c.svc.cfg.FloodStrikes {
		return false, status.Errorf(codes.ResourceExhausted,
			"flooding: %d rate-limited events in a row (limit %.0f/s, burst %d per user)",
			c.strikes, c.svc.cfg.SubmitRate, c.svc.cfg.SubmitBurst)
	}
	return false, nil
}

// handle dispatches one client event. A returned error ends the stream.
func (c *conn) handle(ev *collabv1.ClientEvent) error {
	switch e := ev.GetEvent().(type) {
	case *collabv1.ClientEvent_Open:
		c.handleOpen(e.Open)
	case *collabv1.ClientEvent_Submit:
		return c.handleSubmit(e.Submit)
	case *collabv1.ClientEvent_Close:
		c.handleClose(e.Close)
	case *collabv1.ClientEvent_Cursor:
		return c.handleCursor(e.Cursor)
	default:
		c.reject(errorf(codes.InvalidArgument, "event", "client event has no open, submit, close or cursor"))
	}
	return nil
}

func (c *conn) handleOpen(m *collabv1.Open) {
	name := m.GetDocument()
	fail := func(e *collabv1.Error) {
		e.Document, e.ClientId = name, m.GetClientId()
		c.reject(e)
	}
	if err := validate.Name("open.document", name); err != nil {
		fail(errorf(codes.InvalidArgument, "open.document", "%v", err))
		return
	}
	if err := validate.ID("open.client_id", m.GetClientId(), maxClientIDLen); err != nil {
		fail(errorf(codes.InvalidArgument, "open.client_id", "%v", err))
		return
	}
	if a := c.svc.cfg.Access; a != nil && !a.Allowed(name, c.user) {
		fail(errorf(codes.PermissionDenied, "open.document", "user %q may not open document %q", c.user, name))
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if _, ok := c.subs[name]; ok {
		fail(errorf(codes.FailedPrecondition, "open.document", "document %q is already open on this stream", name))
		return
	}
	if len(c.subs) >= c.svc.cfg.MaxDocsPerStream {
		fail(errorf(codes.ResourceExhausted, "open.document", "this stream already has %d documents open, the limit", len(c.subs)))
		return
	}
	d := c.svc.acquire(name)
	s := &sub{c: c, d: d, clientID: m.GetClientId()}
	var from *uint64
	if m.FromVersion != nil {
		f := m.GetFromVersion()
		from = &f
	}
	if from != nil && c.svc.shared != nil {
		d.awaitVersion(*from)
	}
	if e := d.open(s, from); e != nil {
		c.svc.release(d)
		fail(e)
		return
	}
	c.subs[name] = s
}

func (c *conn) lookup(name string) *sub {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[name]
}

func (c *conn) handleSubmit(m *collabv1.Submit) error {
	fail := func(e *collabv1.Error) {
		e.Document, e.ClientId, e.ClientSeq = m.GetDocument(), m.GetClientId(), m.GetClientSeq()
		c.reject(e)
	}
	ok, err := c.allow("submit")
	if err != nil {
		return err
	}
	if !ok {
		fail(errorf(codes.ResourceExhausted, "submit", "rate limited: at most %.0f submits/s (burst %d) per user", c.svc.cfg.SubmitRate, c.svc.cfg.SubmitBurst))
		return nil
	}
	if err := validate.Name("submit.document", m.GetDocument()); err != nil {
		fail(errorf(codes.InvalidArgument, "submit.document", "%v", err))
		return nil
	}
	s := c.lookup(m.GetDocument())
	if s == nil {
		fail(errorf(codes.FailedPrecondition, "submit.document", "document %q is not open on this stream; send Open first", m.GetDocument()))
		return nil
	}
	if m.GetClientId() != s.clientID {
		fail(errorf(codes.InvalidArgument, "submit.client_id", "client_id %q differs from %q given in Open", m.GetClientId(), s.clientID))
		return nil
	}
	if m.GetClientSeq() == 0 {
		fail(errorf(codes.InvalidArgument, "submit.client_seq", "client_seq must be 1 or more"))
		return nil
	}
	o, err := FromProto(m.GetOp())
	if err != nil {
		fail(errorf(codes.InvalidArgument, "submit.op", "%v", err))
		return nil
	}
	if e := s.d.submit(s, m, o); e != nil {
		fail(e)
	}
	return nil
}

func (c *conn) handleClose(m *collabv1.Close) {
	name := m.GetDocument()
	c.mu.Lock()
	s := c.subs[name]
	delete(c.subs, name)
	c.mu.Unlock()
	if s == nil {
		c.reject(&collabv1.Error{Code: uint32(codes.FailedPrecondition), Field: "close.document", Document: name,
			Message: fmt.Sprintf("document %q is not open on this stream", name)})
		return
	}
	s.d.unsubscribe(s)
	c.svc.release(s.d)
	c.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Closed{Closed: &collabv1.Closed{Document: name}}})
}

func (c *conn) handleCursor(m *collabv1.Cursor) error {
	ok, err := c.allow("cursor")
	if err != nil || !ok {
		return err // a rate-limited cursor move is dropped
	}
	s := c.lookup(m.GetDocument())
	if s == nil {
		c.reject(&collabv1.Error{Code: uint32(codes.FailedPrecondition), Field: "cursor.document", Document: m.GetDocument(),
			Message: fmt.Sprintf("document %q is not open on this stream", m.GetDocument())})
		return nil
	}
	if e := s.d.cursor(s, m); e != nil {
		e.Document, e.ClientId = m.GetDocument(), s.clientID
		c.reject(e)
	}
	return nil
}
