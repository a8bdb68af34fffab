package reference

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// recovered answers a handler panic: logged with its stack, counted in
// bidikit_panics_total, and the client gets INTERNAL without details.
func (s *Server) recovered(ctx context.Context, p any) error {
	s.panics.Inc()
	method, _ := grpc.Method(ctx)
	s.log.Error("handler panicked", "method", method, "peer", peerAddr(ctx), "panic", p, "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal server error")
}

// logStream logs the start and end of every stream at debug level.
func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return handler(srv, ss)
	}
	start := time.Now()
	p := peerAddr(ctx)
	s.log.DebugContext(ctx, "stream start", "method", info.FullMethod, "peer", p)
	err := handler(srv, ss)
	st := status.Convert(err)
	s.log.DebugContext(ctx, "stream end", "method", info.FullMethod, "peer", p,
		"code", st.Code().String(), "msg", st.Message(), "took", time.Since(start).Round(time.Microsecond))
	return err
}

// logUnary logs every unary call at debug level.
func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return handler(ctx, req)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	s.log.DebugContext(ctx, "unary call", "method", info.FullMethod, "peer", peerAddr(ctx),
		"code", status.Code(err).String(), "took", time.Since(start).Round(time.Microsecond))
	return resp, err
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

const healthWatch = "/grpc.health.v1.Health/Watch"

// watchers ends health Watch streams at shutdown. grpc's health server keeps
// a Watch open until the client leaves, which would hold GracefulStop for the
// whole grace period; instead each watcher is ended with UNAVAILABLE once it
// has been told NOT_SERVING (or had never been told SERVING).
type watchers struct {
	draining atomic.Bool
	mu       sync.Mutex // guards set
	set      map[*watchStream]struct{}
}

// watchStream is one Watch call; its handler runs on ctx, which drain cancels.
type watchStream struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelFunc
	w      *watchers

	mu      sync.Mutex // guards serving
	serving bool       // the last status sent was SERVING
}

func (ws *watchStream) Context() context.Context { return ws.ctx }

// SendMsg records what the watcher was last told and ends the stream once it
// has been told anything but SERVING during shutdown.
func (ws *watchStream) SendMsg(m any) error {
	err := ws.ServerStream.SendMsg(m)
	if r, ok := m.(*healthpb.HealthCheckResponse); ok {
		ws.mu.Lock()
		ws.serving = r.GetStatus() == healthpb.HealthCheckResponse_SERVING
		serving := ws.serving
		ws.mu.Unlock()
		if !serving && ws.w.draining.Load() {
			ws.cancel()
		}
	}
	return err
}

// intercept wraps health Watch streams; other methods pass through.
func (w *watchers) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != healthWatch {
		return handler(srv, ss)
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	ws := &watchStream{ServerStream: ss, ctx: ctx, w: w}
	ws.cancel = func() { cancel(errShuttingDown) }
	w.mu.Lock()
	w.set[ws] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.set, ws)
		w.mu.Unlock()
		cancel(nil)
	}()
	err := handler(srv, ws)
	if errors.Is(context.Cause(ctx), errShuttingDown) {
		return status.Error(codes.Unavailable, "server shutting down")
	}
	return err
}

var errShuttingDown = errors.New("server shutting down")

// drain marks shutdown and ends the watchers not currently told SERVING.
func (w *watchers) drain() {
	w.draining.Store(true)
	w.mu.Lock()
	defer w.mu.Unlock()
	for ws := range w.set {
		ws.mu.Lock()
		serving := ws.serving
		ws.mu.Unlock()
		if !serving {
			ws.cancel()
		}
	}
}
