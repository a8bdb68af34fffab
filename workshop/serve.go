package workshop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"google.golang.org/grpc"
	channelzsvc "google.golang.org/grpc/channelz/service"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/chat"
	"github.com/bidikit/bidikit/reference/collab"
	"github.com/bidikit/bidikit/reference/game"
	"github.com/bidikit/bidikit/reference/service"
	"github.com/bidikit/bidikit/reference/store"
)

// Server is a server running on loopback for the workshop: an exercise's
// broken server (Start) or the reference server (StartReference).
type Server struct {
	// Addr is the gRPC address (host:port).
	Addr string
	// AdminURL is the admin HTTP base URL with /debug/pprof/ and /healthz
	// (http://host:port), what the leaks check reads.
	AdminURL string

	once sync.Once
	stop func()
}

// Stop stops the server and waits for its goroutines, including those the
// exercise started (through its stop function). Safe to call twice.
func (s *Server) Stop() { s.once.Do(s.stop) }

// AdminMux returns the admin endpoints every workshop server offers:
// /debug/pprof/ (the net/http/pprof handlers) and /healthz.
func AdminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

// Start serves ex's broken server on addr (gRPC, with health, reflection
// and channelz) and the admin endpoints on adminAddr ("" picks a free
// loopback port). It returns once both listen. No authentication: the
// broken servers take the bearer token as the user id.
func Start(ex Exercise, addr, adminAddr string) (*Server, error) {
	if adminAddr == "" {
		adminAddr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("exercise %d: listen for gRPC on %s: %w", ex.Number, addr, err)
	}
	alis, err := net.Listen("tcp", adminAddr)
	if err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("exercise %d: listen for admin HTTP on %s: %w", ex.Number, adminAddr, err)
	}
	gs := grpc.NewServer()
	stopEx := ex.Register(gs)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	channelzsvc.RegisterChannelzServiceToServer(gs)
	admin := &http.Server{Handler: AdminMux(), ReadHeaderTimeout: 10 * time.Second}

	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(lis) })
	wg.Go(func() {
		if err := admin.Serve(alis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("workshop admin server failed", "addr", alis.Addr().String(), "err", err)
		}
	})
	return &Server{Addr: lis.Addr().String(), AdminURL: "http://" + alis.Addr().String(), stop: func() {
		hs.Shutdown()
		stopEx() // first: handlers that never end on their own watch it
		gs.Stop()
		_ = admin.Close()
		wg.Wait()
	}}, nil
}

// StartReference serves the reference server for service (chat, collab or
// game) on free loopback ports, with memory storage and development auth,
// the defaults of `bidikit serve`. log nil discards the server's logs.
func StartReference(svcName string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg, set := reference.NewRegistry()
	var svc service.Service
	var err error
	switch svcName {
	case scenario.Chat:
		cfg := chat.DefaultConfig()
		svc, err = chat.New(cfg, store.NewMemory(cfg.History), set, nil, log)
	case scenario.Collab:
		svc, err = collab.New(collab.DefaultConfig(), store.NewMemory(0), set, log)
	case scenario.Game:
		svc, err = game.New(game.DefaultConfig(), set, log)
	default:
		return nil, fmt.Errorf("reference: unknown service %q (chat, collab or game)", svcName)
	}
	if err != nil {
		return nil, fmt.Errorf("reference %s service: %w", svcName, err)
	}
	srv, err := reference.New(reference.Options{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Authenticator: auth.DevMode{}, Registry: reg, Metrics: set, Logger: log, GracePeriod: 3 * time.Second}, svc)
	if err != nil {
		_ = svc.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		cancel()
		return nil, err
	}
	return &Server{Addr: srv.Addr(), AdminURL: "http://" + srv.AdminAddr(), stop: func() {
		cancel()
		_ = srv.Wait()
	}}, nil
}
