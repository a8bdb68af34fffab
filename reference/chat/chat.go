// Package chat is the reference implementation of bidikit.chat.v1.ChatService:
// rooms with one gapless total order each, acks after durable commit,
// de-duplicated resends, resume without gap or duplicate, bounded
// per-subscriber queues that cut slow consumers, per-user rate limits and
// graceful drain.
//
// Goroutines per stream: the gRPC handler goroutine supervises; a receive
// pump turns Recv into a channel; the processor (reader) handles client
// events and owns the stream's room set; the writer owns the stream's send
// side and is the only goroutine that calls Send. Broadcasts (from the
// store's commit callbacks) only push into the members' bounded queues, so a
// slow reader never blocks anyone else.
package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/ratelimit"
	"github.com/bidikit/bidikit/reference/store"
)

// ACL decides who may join a room. A nil ACL leaves every room open.
type ACL interface {
	Allowed(room, user string) bool
}

// Service is the chat service. It implements service.Service. All methods
// are safe for concurrent use.
type Service struct {
	cfg Config
	st  store.Store // nil in shared mode
	// shared, when set, holds the rooms instead of st (NewShared).
	shared SharedLog
	acl    ACL
	log    *slog.Logger
	rooms  *roomTable
	lim    *ratelimit.Limiter

	// metric children, bound once
	mStreams, mMembers, mQueue      prometheus.Gauge
	mCuts, mRateLimited, mCommitted prometheus.Counter
	mDelivered                      prometheus.Counter
	mRejected                       *prometheus.CounterVec
	mShutting                       prometheus.Gauge

	mu       sync.Mutex // guards sessions, draining, idle
	sessions map[*session]struct{}
	draining bool
	idle     chan struct{} // closed when draining and no session is left

	bg sync.WaitGroup // per-stream clean-up goroutines
}

// New returns a chat service storing messages in st and counting into m.
// acl may be nil (every room open) and log may be nil (discard).
func New(cfg Config, st store.Store, m *metrics.Set, acl ACL, log *slog.Logger) (*Service, error) {
	if st == nil {
		return nil, errors.New("chat: nil store")
	}
	return newService(cfg, st, nil, m, acl, log)
}

// newService builds a Service over st (local mode) or shared (shared mode):
// exactly one of them is set.
func newService(cfg Config, st store.Store, shared SharedLog, m *metrics.Set, acl ACL, log *slog.Logger) (*Service, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("chat: nil metrics set (use metrics.Discard() in tests)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	const svc = "chat"
	return &Service{
		cfg:          cfg,
		st:           st,
		shared:       shared,
		acl:          acl,
		log:          log.With("service", svc),
		rooms:        newRoomTable(),
		lim:          ratelimit.New(cfg.SendRate, cfg.SendBurst),
		mStreams:     m.ActiveStreams.WithLabelValues(svc),
		mMembers:     m.Members.WithLabelValues(svc),
		mQueue:       m.QueueDepth.WithLabelValues(svc),
		mCuts:        m.SlowConsumerCuts.WithLabelValues(svc),
		mRateLimited: m.RateLimited.WithLabelValues(svc, "send"),
		mCommitted:   m.Committed.WithLabelValues(svc),
		mDelivered:   m.Delivered.WithLabelValues(svc),
		mRejected:    m.Rejected.MustCurryWith(prometheus.Labels{"service": svc}),
		mShutting:    m.ShuttingDown,
		sessions:     map[*session]struct{}{},
	}, nil
}

// Name implements service.Service.
func (s *Service) Name() string { return chatv1.ChatService_ServiceDesc.ServiceName }

// Register implements service.Service.
func (s *Service) Register(g *grpc.Server) { chatv1.RegisterChatServiceServer(g, server{s: s}) }

// server adapts Service to the generated interface.
type server struct {
	chatv1.UnimplementedChatServiceServer
	s *Service
}

func (h server) Connect(stream chatv1.ChatService_ConnectServer) error { return h.s.connect(stream) }

// flushGrace bounds how long a stream ending with a fatal status waits for
// its writer to flush the events queued before the end.
const flushGrace = time.Second

var errShuttingDown = status.Error(codes.Unavailable, "server shutting down")

// Drain implements service.Service: new streams are refused with
// UNAVAILABLE; every open stream stops reading, waits for its in-flight
// commits, flushes its queue (acks included) and ends with UNAVAILABLE
// "server shutting down". When ctx ends first, the remaining streams are
// ended at once and ctx's error is returned.
func (s *Service) Drain(ctx context.Context) error {
	s.mu.Lock()
	if !s.draining {
		s.draining = true
		s.idle = make(chan struct{})
		if len(s.sessions) == 0 {
			close(s.idle)
		}
	}
	idle := s.idle
	open := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		open = append(open, ss)
	}
	s.mu.Unlock()
	s.mShutting.Set(1)
	for _, ss := range open {
		ss.startDrain()
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		s.forceAll()
		return fmt.Errorf("chat drain: %w", ctx.Err())
	}
}

// forceAll ends every open stream now with UNAVAILABLE.
func (s *Service) forceAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		ss.force()
	}
}

// Close implements service.Service: it ends what is still open and waits
// (up to 10 s) for every stream's clean-up. The store is not closed: the
// caller owns it.
func (s *Service) Close() error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.forceAll()
	done := make(chan struct{})
	go func() { s.bg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("chat close: stream clean-up still running after 10s")
	}
}

// openSession registers a new stream, or refuses it while draining.
func (s *Service) openSession(user string, stream chatv1.ChatService_ConnectServer) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return nil, errShuttingDown
	}
	ss := newSession(s, user, stream)
	s.sessions[ss] = struct{}{}
	s.mStreams.Inc()
	return ss, nil
}

func (s *Service) closeSession(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, ss)
	if s.draining && s.idle != nil && len(s.sessions) == 0 {
		select {
		case <-s.idle:
		default:
			close(s.idle)
		}
	}
}

// connect runs one stream. The handler goroutine supervises: it returns as
// soon as the stream must end (a fatal client error, a slow-consumer cut, a
// forced shutdown) even when the writer is blocked in Send on a reader that
// does not read; returning cancels the stream, which unblocks the writer and
// the receive pump. Clean-up runs after both loops ended, on a goroutine
// tracked by s.bg.
func (s *Service) connect(stream chatv1.ChatService_ConnectServer) error {
	user, ok := auth.UserFrom(stream.Context())
	if !ok || user == "" {
		return status.Error(codes.Unauthenticated, "no authenticated user on the stream (auth interceptor missing)")
	}
	ss, err := s.openSession(user, stream)
	if err != nil {
		return err
	}
	defer s.closeSession(ss)

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	recv := make(chan recvResult)
	go ss.pump(ctx, recv)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ss.readLoop(gctx, recv) })
	g.Go(func() error { return ss.writeLoop(gctx) })
	done := make(chan error, 1)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		err := g.Wait()
		ss.cleanup()
		done <- err
	}()

	select {
	case err = <-done:
	case <-ss.cutCh:
		err = ss.slowStatus()
	case <-ss.forceCh:
		err = errShuttingDown
	case <-gctx.Done():
		if st, ok := status.FromError(context.Cause(gctx)); ok {
			// A fatal status: give the writer a moment to flush what was
			// queued before it (the Error events that led to it), but do
			// not wait on a reader that does not read.
			err = st.Err()
			grace := time.NewTimer(flushGrace)
			select {
			case <-done:
			case <-grace.C:
			case <-ss.cutCh:
			case <-ss.forceCh:
			}
			grace.Stop()
		} else {
			// Both loops ended cleanly or the client went away: the
			// writer is not blocked, so waiting is bounded.
			select {
			case err = <-done:
			case <-ss.cutCh:
				err = ss.slowStatus()
			case <-ss.forceCh:
				err = errShuttingDown
			}
		}
	}
	return err
}

// recvError maps a Recv failure to the stream's final status: undecodable
// bytes are the client's fault (INVALID_ARGUMENT), never INTERNAL.
func recvError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return status.FromContextError(err).Err()
	}
	if st.Code() == codes.Internal && containsFold(st.Message(), "unmarshal") {
		return status.Errorf(codes.InvalidArgument, "malformed message: %s", st.Message())
	}
	return err
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		match := true
		for j := 0; j < len(sub); j++ {
			a, b := s[i+j], sub[j]
			if 'A' <= a && a <= 'Z' {
				a += 'a' - 'A'
			}
			if a != b {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

type recvResult struct {
	ev  *chatv1.ClientEvent
	err error
}
