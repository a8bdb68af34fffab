// Package collab is the reference collaborative-editing service
// (bidikit.collab.v1.CollabService): plain-text documents edited with
// server-ordered operational transformation (Jupiter / ShareDB style).
//
// Each open document is a doc actor (see doc) guarded by its own mutex; each
// stream is a conn on a streamhost.Host: its receive loop decodes client
// events and calls into the doc actors, its writer drains the conn's
// bounded send queue.
// Committed operations are published from the store's commit callbacks, so
// editors only ever see durable versions, in version order.
package collab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"sync"
	"time"

	"github.com/bidikit/bidikit/reference/wire"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/ratelimit"
	"github.com/bidikit/bidikit/reference/service"
	"github.com/bidikit/bidikit/reference/store"
	"github.com/bidikit/bidikit/reference/streamhost"
	"github.com/bidikit/bidikit/reference/validate"
)

const serviceLabel = "collab"

// maxClientIDLen bounds Open.client_id and Submit.client_id.
const maxClientIDLen = 128

// Service is the collab service. Safe for concurrent use.
type Service struct {
	collabv1.UnimplementedCollabServiceServer

	cfg     Config
	log     docLog // the documents' log, chosen at assembly (New, NewShared)
	asm     assembly
	metrics *metrics.Set
	logger  *slog.Logger
	limiter *ratelimit.Limiter
	host    *streamhost.Host[*collabv1.ServerEvent]
	flood   streamhost.FloodPolicy

	mu   sync.Mutex // guards docs
	docs map[string]*doc

	// appends counts the goroutines that hand failed or duplicate Append
	// outcomes to their documents (see doc.appendOp); Close waits for them.
	appends sync.WaitGroup
}

// assembly is what New or NewShared decided about the documents' log.
type assembly struct {
	// inFlight is how many appends a document may have in flight: 1 when
	// other instances append to the same log (an append expecting the log
	// to end at v+1 must not follow one at v that may still lose), more
	// for a log this instance alone writes (its Head includes every
	// accepted append, so a loaded document's tail is its own).
	inFlight int
	// snapshotEvery stores the text every that many versions (0: never).
	snapshotEvery int
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
	return newService(cfg, newLocalLog(st), assembly{inFlight: cfg.QueueEvents, snapshotEvery: cfg.SnapshotEvery}, m, log)
}

func newService(cfg Config, lg docLog, asm assembly, m *metrics.Set, log *slog.Logger) (*Service, error) {
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
		cfg: cfg, log: lg, asm: asm, metrics: m, logger: log,
		limiter: ratelimit.New(cfg.SubmitRate, cfg.SubmitBurst),
		flood:   streamhost.FloodPolicy{Mode: streamhost.FloodInARow, Limit: cfg.FloodStrikes},
		host: streamhost.New[*collabv1.ServerEvent](streamhost.Config{
			Service:    serviceLabel,
			QueueItems: cfg.QueueEvents,
			QueueBytes: cfg.QueueBytes,
			Metrics: streamhost.Metrics{
				Streams: m.ActiveStreams.WithLabelValues(serviceLabel),
				Queue:   m.QueueDepth.WithLabelValues(serviceLabel),
				Cuts:    m.SlowConsumerCuts.WithLabelValues(serviceLabel),
			},
			Log: log,
		}),
		docs: map[string]*doc{},
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
func (s *Service) Drain(ctx context.Context) error { return s.host.Drain(ctx) }

// Close implements service.Service: documents are forgotten and their log
// feeds stopped. The store or shared log belongs to the caller.
func (s *Service) Close() error {
	err := s.host.Close()
	s.mu.Lock()
	docs := s.docs
	s.docs = map[string]*doc{}
	s.mu.Unlock()
	for _, d := range docs {
		d.stopLogFeed()
	}
	s.appends.Wait()
	s.log.close()
	return err
}

// Text returns a document's text and version as published (committed),
// loading it from its log when it is not open. For tests and admin tools; it takes the document's lock.
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
	d.subMu.Lock()
	top := d.published
	d.subMu.Unlock()
	text, err := d.textAt(top)
	return text, top, err
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
		d.stopLogFeed()
	}
}

// Edit implements the bidi RPC: one stream on the host, conn its domain
// side.
func (s *Service) Edit(stream grpc.BidiStreamingServer[collabv1.ClientEvent, collabv1.ServerEvent]) error {
	return s.host.Serve(stream, func(st *streamhost.Stream[*collabv1.ServerEvent]) (streamhost.Handler[*collabv1.ServerEvent], error) {
		return &conn{svc: s, st: st, stream: stream, user: st.User(), subs: map[string]*sub{},
			lim: s.limiter.Acquire(st.User())}, nil
	})
}

// conn is the collab side of one Edit stream (a streamhost.Handler). The
// receive loop owns flood and is the only goroutine that opens
// subscriptions; subs is guarded by mu because doc actors look streams up
// while the receive loop changes them.
type conn struct {
	svc    *Service
	st     *streamhost.Stream[*collabv1.ServerEvent]
	stream grpc.BidiStreamingServer[collabv1.ClientEvent, collabv1.ServerEvent]
	user   string
	lim    *rate.Limiter

	mu     sync.Mutex
	subs   map[string]*sub
	closed bool

	flood streamhost.FloodMeter // rate-limited events in a row; receive loop only
}

// push queues ev for the writer without blocking; a full queue cuts the
// stream as a slow consumer (RESOURCE_EXHAUSTED).
func (c *conn) push(ev *collabv1.ServerEvent) { c.st.Push(ev, proto.Size(ev)) }

// fail ends the stream with code and msg once what is queued was written.
func (c *conn) fail(code codes.Code, msg string) { c.st.Close(status.Error(code, msg)) }

// Write sends a batch of queued events (streamhost.Handler).
func (c *conn) Write(_ context.Context, batch []*collabv1.ServerEvent) error {
	delivered := c.svc.metrics.Delivered.WithLabelValues(serviceLabel)
	for _, ev := range batch {
		if err := c.stream.Send(ev); err != nil {
			return err
		}
		delivered.Inc()
	}
	return nil
}

// Overflowed is the status of a stream cut as a slow consumer.
func (c *conn) Overflowed() error {
	return status.Errorf(codes.ResourceExhausted,
		"slow consumer: editor %q fell behind by more than %d events or %d bytes in its send queue",
		c.user, c.svc.cfg.QueueEvents, c.svc.cfg.QueueBytes)
}

// Drain implements streamhost.Handler: collab queues nothing more.
func (c *conn) Drain() {}

// Receive decodes one client event and handles it. A returned error ends
// the stream.
func (c *conn) Receive(f *wire.Frame) error {
	ev := &collabv1.ClientEvent{}
	if err := wire.Decode(f, ev); err != nil {
		c.svc.metrics.Rejected.WithLabelValues(serviceLabel, "message").Inc()
		return err
	}
	return c.handle(ev)
}

// Close undoes everything the stream created. It runs once, after the last
// Receive.
func (c *conn) Close() {
	c.mu.Lock()
	c.closed = true
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for _, s := range subs {
		s.d.unsubscribe(s)
		c.svc.release(s.d)
	}
	c.st.Close(nil)
	c.svc.limiter.Release(c.user)
}

// reject queues an Error event and counts it.
func (c *conn) reject(e *collabv1.Error) {
	c.svc.metrics.Rejected.WithLabelValues(serviceLabel, e.Field).Inc()
	c.push(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Error{Error: e}})
}

// allow spends one rate-limit token; a stream that keeps flooding
// (FloodStrikes rate-limited events in a row) gets a fatal
// RESOURCE_EXHAUSTED.
func (c *conn) allow(kind string) (bool, error) {
	if c.lim.Allow() {
		c.svc.flood.Allowed(&c.flood)
		return true, nil
	}
	c.svc.metrics.RateLimited.WithLabelValues(serviceLabel, kind).Inc()
	if c.svc.flood.Refused(&c.flood, time.Now(), 1) {
		return false, status.Errorf(codes.ResourceExhausted,
			"flooding: %d rate-limited events in a row (limit %.0f/s, burst %d per user)",
			c.flood.Count(), c.svc.cfg.SubmitRate, c.svc.cfg.SubmitBurst)
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
	if from != nil {
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
