// Package reference assembles the bidikit reference server: one gRPC server
// hosting the bidikit services (chat, collab, game) behind authentication,
// limits, keepalive, recovery and metrics, plus an admin HTTP server with
// /metrics, /healthz and /debug/pprof/, and a bounded graceful shutdown.
//
//	srv, err := reference.New(reference.Options{Addr: "127.0.0.1:0", Authenticator: auth.DevMode{}}, svc)
//	err = srv.Serve(ctx) // until ctx is done, then graceful shutdown
package reference

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	channelzsvc "google.golang.org/grpc/channelz/service"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/service"
	"github.com/bidikit/bidikit/reference/validate"
)

// Server is the reference server. Build it with New, run it with Serve (or
// Start and Wait). Its methods are safe for concurrent use.
type Server struct {
	opts     Options
	log      *slog.Logger
	services []service.Service

	grpc    *grpc.Server
	health  *health.Server
	watches *watchers
	admin   *http.Server // nil when Options.DisableAdmin

	panics      prometheus.Counter
	connRefused prometheus.Counter
	connOpen    prometheus.Gauge
	h2Floods    *prometheus.CounterVec

	// closers run after the services' Close, in order (storage opened on the
	// services' behalf by Build). Set before Start, read only by shutdown.
	closers []func() error
	storage string // "memory", "sqlite:PATH", "jetstream:URL", or "" when not built by Build

	serving atomic.Bool // true from Start until shutdown begins (/healthz)

	mu       sync.Mutex // guards lis, adminLis, started
	lis      net.Listener
	adminLis net.Listener
	started  bool

	done    chan struct{} // closed when shutdown finished
	doneErr error         // written before done is closed
}

// NewRegistry returns a Prometheus registry with the Go and process
// collectors and the bidikit_* metric set registered on it: pass both to
// the services' constructors and to New as Options.Registry and
// Options.Metrics.
func NewRegistry() (*prometheus.Registry, *metrics.Set) {
	reg := newRegistry()
	return reg, metrics.New(reg)
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// New builds a Server hosting services. It listens on nothing yet; Serve or
// Start does. New fails on invalid options or duplicate service names.
func New(opts Options, services ...service.Service) (*Server, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		services: services,
		health:   health.NewServer(),
		watches:  &watchers{set: map[*watchStream]struct{}{}},
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bidikit_panics_total", Help: "Handler panics recovered and answered with INTERNAL."}),
		connRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bidikit_connections_refused_total", Help: "Connections closed at once because MaxConnections were open."}),
		connOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bidikit_connections_open", Help: "Open client connections on the gRPC port."}),
		h2Floods: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bidikit_h2_flood_closes_total", Help: "Connections closed by the HTTP/2 flood guard (H2Limits), by the rule they broke."},
			[]string{"rule"}),
		done: make(chan struct{}),
	}
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	for _, c := range []prometheus.Collector{grpcMetrics, s.panics, s.connRefused, s.connOpen, s.h2Floods} {
		if err := opts.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("reference: registering metrics (one Registry per Server): %w", err)
		}
	}

	recoverOpt := recovery.WithRecoveryHandlerContext(s.recovered)
	// Memory per idle member (issue #19; docs/benchmarks.md): a connection
	// costs grpc-go three goroutines (reader, loopy writer, keepalive) and
	// a stream one more, whatever the options. The options that hold memory
	// per connection: the read buffer is lent from a pool only while read
	// bytes wait (ReadOnReady, internal/readyread: the wrappers below must keep
	// it), the write buffer is shared (SharedWriteBuffer) and held only
	// while a connection writes. Left at grpc-go's defaults on purpose:
	// the window sizes (they allocate nothing up front; setting them turns
	// off BDP estimation, which a fan-out's bursts use) and the hpack table
	// size (0.85 KiB a connection; smaller sends every later stream's
	// headers uncompressed).
	s.grpc = grpc.NewServer(
		grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(opts.MaxRecvMsgSize),
		grpc.MaxHeaderListSize(opts.MaxHeaderListSize),
		grpc.ReadBufferSize(opts.ReadBufferSize),
		grpc.SharedWriteBuffer(true),
		grpc.KeepaliveParams(opts.Keepalive),
		grpc.KeepaliveEnforcementPolicy(opts.KeepalivePolicy),
		grpc.ChainStreamInterceptor(
			grpcMetrics.StreamServerInterceptor(),
			s.logStream,
			recovery.StreamServerInterceptor(recoverOpt),
			s.watches.intercept,
			auth.StreamInterceptor(opts.Authenticator),
		),
		grpc.ChainUnaryInterceptor(
			grpcMetrics.UnaryServerInterceptor(),
			s.logUnary,
			recovery.UnaryServerInterceptor(recoverOpt),
			auth.UnaryInterceptor(opts.Authenticator),
		),
	)
	seen := map[string]bool{}
	for _, svc := range services {
		name := svc.Name()
		if name == "" || seen[name] {
			return nil, fmt.Errorf("reference: service name %q is empty or hosted twice", name)
		}
		seen[name] = true
		svc.Register(s.grpc)
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	channelzsvc.RegisterChannelzServiceToServer(s.grpc)
	grpcMetrics.InitializeMetrics(s.grpc)

	if !opts.DisableAdmin {
		s.admin = &http.Server{
			Handler:           s.adminMux(),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	return s, nil
}

// Metrics returns the bidikit_* set served on /metrics.
func (s *Server) Metrics() *metrics.Set { return s.opts.Metrics }

// Registry returns the registry served on /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.opts.Registry }

// GRPC returns the underlying gRPC server (to register more services before
// Start; they get no health status or Drain).
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Storage describes where the services keep their logs when the server was
// made by Build: "memory", "sqlite:PATH" or "jetstream:URL" (clustered
// mode); "" otherwise.
func (s *Server) Storage() string { return s.storage }

// Addr returns the bound gRPC address, "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lis == nil {
		return ""
	}
	return s.lis.Addr().String()
}

// AdminAddr returns the bound admin HTTP address, "" before Start or when the
// admin server is disabled.
func (s *Server) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adminLis == nil {
		return ""
	}
	return s.adminLis.Addr().String()
}

// Serve listens, serves until ctx is done, then shuts down gracefully and
// returns. It is Start followed by Wait.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	return s.Wait()
}

// Start binds both listeners and begins serving in the background; it returns
// once Addr and AdminAddr are valid. When ctx is done the server shuts down
// gracefully; Wait reports the outcome. Start may be called once. When it
// fails to listen, the Server is done: it has closed its services and what
// Build opened for them.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("reference: Server.Start called twice")
	}
	s.started = true
	lis, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		err = &validate.SettingError{Field: "Options.Addr", Reason: fmt.Sprintf("%q: cannot listen for gRPC", s.opts.Addr), Err: err}
		return s.abandon(err)
	}
	var adminLis net.Listener
	if s.admin != nil {
		adminLis, err = net.Listen("tcp", s.opts.AdminAddr)
		if err != nil {
			_ = lis.Close()
			err = &validate.SettingError{Field: "Options.AdminAddr",
				Reason: fmt.Sprintf("%q: cannot listen for admin HTTP (give another address, or turn the admin server off)", s.opts.AdminAddr), Err: err}
			return s.abandon(err)
		}
	}
	s.lis, s.adminLis = lis, adminLis

	for _, svc := range s.services {
		s.health.SetServingStatus(svc.Name(), healthpb.HealthCheckResponse_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.serving.Store(true)

	serveErr := make(chan error, 1)
	go func() {
		serveErr <- s.grpc.Serve(newFloodListener(newLimitListener(lis, s.opts.MaxConnections, s.connRefused, s.connOpen), s.opts.H2Limits, s.h2Floods))
	}()
	adminDone := make(chan struct{})
	if s.admin != nil {
		go func() {
			defer close(adminDone)
			if err := s.admin.Serve(adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("admin HTTP server failed", "addr", adminLis.Addr().String(), "err", err)
			}
		}()
	} else {
		close(adminDone)
	}
	names := make([]string, len(s.services))
	for i, svc := range s.services {
		names[i] = svc.Name()
	}
	admin := "disabled"
	if adminLis != nil {
		admin = adminLis.Addr().String()
	}
	s.log.Info("reference server serving", "grpc", lis.Addr().String(), "admin", admin, "services", names,
		"max_connections", s.opts.MaxConnections, "max_streams_per_conn", s.opts.MaxConcurrentStreams,
		"max_recv_msg_size", s.opts.MaxRecvMsgSize, "grace", s.opts.GracePeriod)

	go func() {
		var err error
		select {
		case <-ctx.Done():
			s.log.Info("shutdown requested", "cause", context.Cause(ctx))
		case err = <-serveErr:
			s.log.Error("gRPC server stopped unexpectedly", "err", err)
			err = fmt.Errorf("grpc serve: %w", err)
		}
		s.doneErr = errors.Join(err, s.shutdown(serveErr, adminDone))
		close(s.done)
	}()
	return nil
}

// abandon releases the services and storage after a failed Start; Wait then
// returns err.
func (s *Server) abandon(err error) error {
	s.grpc.Stop()
	errs := []error{err}
	for _, svc := range s.services {
		errs = append(errs, svc.Close())
	}
	for _, c := range s.closers {
		errs = append(errs, c())
	}
	s.doneErr = errors.Join(errs...)
	close(s.done)
	return s.doneErr
}

// Wait blocks until the server has shut down after Start, and returns what
// went wrong (serving failure, a service's Close error), if anything.
func (s *Server) Wait() error {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return errors.New("reference: Server.Wait called before Start")
	}
	<-s.done
	return s.doneErr
}

// shutdown runs the graceful shutdown sequence; it is called once, from the
// goroutine Start leaves behind. serveErr receives grpc.Serve's result (if it
// has not already been taken); adminDone closes when the admin server's Serve
// returned.
func (s *Server) shutdown(serveErr <-chan error, adminDone <-chan struct{}) error {
	start := time.Now()
	grace := s.opts.GracePeriod
	s.log.Info("graceful shutdown: health NOT_SERVING, draining streams", "grace", grace)
	s.serving.Store(false)
	s.opts.Metrics.ShuttingDown.Set(1)
	s.health.Shutdown()
	s.watches.drain()

	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()

	// 1. Every service ends its streams with UNAVAILABLE after flushing what
	//    it acknowledged; they drain in parallel, each its own error slot.
	drainErrs := make([]error, len(s.services))
	var wg sync.WaitGroup
	for i, svc := range s.services {
		wg.Go(func() { drainErrs[i] = svc.Drain(ctx) })
	}
	wg.Wait()
	for i, err := range drainErrs {
		if err != nil {
			s.log.Warn("service did not drain within the grace period", "service", s.services[i].Name(), "err", err)
		} else {
			s.log.Info("service drained", "service", s.services[i].Name())
		}
	}

	// 2. Stop accepting and wait for what is left (health watchers,
	//    reflection), bounded by what remains of the grace period.
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
		s.log.Info("gRPC server stopped gracefully")
	case <-ctx.Done():
		s.log.Warn("grace period over: closing remaining connections", "grace", grace)
		s.grpc.Stop()
		<-stopped
	}
	select {
	case <-serveErr:
	default:
	}

	// 3. Services release what they hold, then storage Build opened.
	var errs []error
	for _, svc := range s.services {
		if err := svc.Close(); err != nil {
			s.log.Error("closing service", "service", svc.Name(), "err", err)
			errs = append(errs, fmt.Errorf("close %s: %w", svc.Name(), err))
		}
	}
	for _, c := range s.closers {
		if err := c(); err != nil {
			s.log.Error("closing storage", "err", err)
			errs = append(errs, err)
		}
	}

	// 4. The admin server last, so /healthz said 503 throughout.
	if s.admin != nil {
		actx, acancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := s.admin.Shutdown(actx); err != nil {
			_ = s.admin.Close()
		}
		acancel()
	}
	<-adminDone
	s.log.Info("reference server stopped", "took", time.Since(start).Round(time.Millisecond))
	return errors.Join(errs...)
}
