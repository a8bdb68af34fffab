// Package chat is the reference implementation of bidikit.chat.v1.ChatService:
// rooms with one gapless total order each, acks after durable commit,
// de-duplicated resends, resume without gap or duplicate, bounded
// per-subscriber queues that cut slow consumers, per-user rate limits and
// graceful drain.
//
// Streams run on a streamhost.Host: two goroutines each. The receive loop
// handles client events and owns the stream's room set; the writer (the gRPC
// handler goroutine) is the only one that calls Send. Broadcasts (from the
// log's commit callbacks and feeds) only push into the members' bounded queues, so a
// slow reader never blocks anyone else.
package chat

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/ratelimit"
	"github.com/bidikit/bidikit/reference/store"
	"github.com/bidikit/bidikit/reference/streamhost"
)

// ACL decides who may join a room. A nil ACL leaves every room open.
type ACL = streamhost.ACL

// Service is the chat service. It implements service.Service. All methods
// are safe for concurrent use.
type Service struct {
	cfg Config
	// lg holds the rooms' messages and pl places Sends in it: the local log
	// over a store (New) or a shared log and a waitPlacer (NewShared).
	// Chosen once here; the service code has one path.
	lg    SharedLog
	pl    placer
	acl   ACL
	log   *slog.Logger
	rooms *roomTable
	lim   *ratelimit.Limiter
	host  *streamhost.Host[item]
	flood streamhost.FloodPolicy

	// metric children, bound once
	mMembers                 prometheus.Gauge
	mRateLimited, mCommitted prometheus.Counter
	mDelivered               prometheus.Counter
	mRejected                *prometheus.CounterVec

	bg sync.WaitGroup // send chains running on their own goroutine (order.go)
}

// New returns a chat service storing messages in st (room R as stream
// "chat/R", through a local log: locallog.go) and counting into m. acl may
// be nil (every room open) and log may be nil (discard). The caller owns
// st and closes it after the service.
func New(cfg Config, st store.Store, m *metrics.Set, acl ACL, log *slog.Logger) (*Service, error) {
	if st == nil {
		return nil, errors.New("chat: nil store")
	}
	lg := newLocalLog(st, roomStreamPrefix)
	return newService(cfg, lg, lg, m, acl, log)
}

// roomStreamPrefix names a room's log in a store: "chat/<room>".
const roomStreamPrefix = "chat/"

// newService builds a Service over lg, placing Sends through pl.
func newService(cfg Config, lg SharedLog, pl placer, m *metrics.Set, acl ACL, log *slog.Logger) (*Service, error) {
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
	log = log.With("service", svc)
	flood := streamhost.FloodPolicy{Mode: streamhost.FloodInWindow, Window: cfg.FloodWindow}
	if cfg.FloodFactor > 0 {
		flood.Limit = cfg.FloodFactor * cfg.SendBurst
	}
	return &Service{
		cfg:   cfg,
		lg:    lg,
		pl:    pl,
		acl:   acl,
		log:   log,
		rooms: newRoomTable(),
		lim:   ratelimit.New(cfg.SendRate, cfg.SendBurst),
		flood: flood,
		host: streamhost.New[item](streamhost.Config{
			Service:    svc,
			QueueItems: cfg.QueueMessages,
			QueueBytes: cfg.QueueBytes,
			Metrics: streamhost.Metrics{
				Streams:      m.ActiveStreams.WithLabelValues(svc),
				Queue:        m.QueueDepth.WithLabelValues(svc),
				Cuts:         m.SlowConsumerCuts.WithLabelValues(svc),
				ShuttingDown: m.ShuttingDown,
			},
			Log: log,
		}),
		mMembers:     m.Members.WithLabelValues(svc),
		mRateLimited: m.RateLimited.WithLabelValues(svc, "send"),
		mCommitted:   m.Committed.WithLabelValues(svc),
		mDelivered:   m.Delivered.WithLabelValues(svc),
		mRejected:    m.Rejected.MustCurryWith(prometheus.Labels{"service": svc}),
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

// Drain implements service.Service: new streams are refused with
// UNAVAILABLE; every open stream stops reading, waits for its in-flight
// commits, flushes its queue (acks included) and ends with UNAVAILABLE
// "server shutting down". When ctx ends first, the remaining streams are
// ended at once and ctx's error is returned.
func (s *Service) Drain(ctx context.Context) error { return s.host.Drain(ctx) }

// Close implements service.Service: it ends what is still open and waits
// (up to 10 s each) for every stream's clean-up and the send chains. The
// store (or shared log) is not closed: the caller owns it.
func (s *Service) Close() error {
	err := s.host.Close()
	done := make(chan struct{})
	go func() { s.bg.Wait(); close(done) }()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-done:
		return err
	case <-t.C:
		return errors.Join(err, errors.New("chat close: send chains still running after 10s"))
	}
}

// connect runs one stream on the host; the session is its domain side.
func (s *Service) connect(stream chatv1.ChatService_ConnectServer) error {
	return s.host.Serve(stream, func(st *streamhost.Stream[item]) (streamhost.Handler[item], error) {
		return newSession(s, st, stream), nil
	})
}
