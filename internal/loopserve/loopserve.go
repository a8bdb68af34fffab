// Package loopserve serves a gRPC service on loopback the way bidikit's
// checks expect a server to look: the gRPC health service, channelz and
// reflection beside it, and an admin HTTP listener with /debug/pprof/ and
// /healthz. The broken-server corpus (harness/broken) and the workshop's
// exercise servers use it; the reference server has its own assembly.
package loopserve

import (
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
)

// Options say where and how to serve.
type Options struct {
	// What names the server in errors and logs ("exercise 2", "broken chat").
	What string
	// Addr and AdminAddr are the gRPC and admin listen addresses ("": a
	// free loopback port).
	Addr, AdminAddr string
	// Server are extra grpc.ServerOptions (message size limits, ...).
	Server []grpc.ServerOption
	// WaitForHandlers makes Stop return only after every handler has
	// returned (grpc.WaitForHandlers), so nothing a handler starts on its
	// way out outlives Stop; the service's stop must then release every
	// handler that would otherwise wait forever.
	WaitForHandlers bool
	// Listener, when set, wraps the gRPC listener (a test that watches the
	// raw connections).
	Listener func(net.Listener) net.Listener
	// Admin, when set, adds endpoints to the admin mux (e.g. /metrics).
	Admin func(*http.ServeMux)
}

// Server is one running server. Its listeners and every goroutine its
// handlers started belong to it until Stop.
type Server struct {
	addr, admin string
	once        sync.Once
	stop        func()
	after       []func() // OnStop's, run after stop
}

// Addr is the gRPC address (host:port).
func (s *Server) Addr() string { return s.addr }

// AdminURL is the admin HTTP base URL (http://host:port).
func (s *Server) AdminURL() string { return "http://" + s.admin }

// Stop stops the server: health says NOT_SERVING, the service's own stop
// runs (releasing what its handlers wait on that gRPC's Stop does not end),
// then gRPC and the admin listener stop; it waits for their goroutines.
// Safe to call twice.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.stop()
		for _, f := range s.after {
			f()
		}
	})
}

// OnStop adds f to what Stop runs once the server has stopped (e.g. wait
// for the service's own goroutines). Call it before Stop.
func (s *Server) OnStop(f func()) { s.after = append(s.after, f) }

// Serve registers the service with register (which returns the service's
// own stop function, or nil) on a new grpc.Server and serves it, and the
// admin endpoints, until Stop. It returns once both listen.
func Serve(o Options, register func(*grpc.Server) (stop func())) (*Server, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.AdminAddr == "" {
		o.AdminAddr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen for gRPC on %s: %w", o.What, o.Addr, err)
	}
	alis, err := net.Listen("tcp", o.AdminAddr)
	if err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("%s: listen for admin HTTP on %s: %w", o.What, o.AdminAddr, err)
	}
	gs := grpc.NewServer(append([]grpc.ServerOption{grpc.WaitForHandlers(o.WaitForHandlers)}, o.Server...)...)
	stopSvc := register(gs)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	channelzsvc.RegisterChannelzServiceToServer(gs)
	mux := AdminMux()
	if o.Admin != nil {
		o.Admin(mux)
	}
	admin := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var glis net.Listener = lis
	if o.Listener != nil {
		glis = o.Listener(lis)
	}

	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(glis) })
	wg.Go(func() {
		if err := admin.Serve(alis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("admin HTTP failed", "server", o.What, "addr", alis.Addr().String(), "err", err)
		}
	})
	return &Server{addr: lis.Addr().String(), admin: alis.Addr().String(), stop: func() {
		hs.Shutdown()
		if stopSvc != nil {
			stopSvc()
		}
		gs.Stop()
		_ = admin.Close()
		wg.Wait()
	}}, nil
}

// AdminMux returns the admin endpoints: /debug/pprof/ (the net/http/pprof
// handlers) and /healthz.
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
