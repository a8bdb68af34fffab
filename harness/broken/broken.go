// Package broken is the corpus of servers that prove the checks: small,
// independent servers with exactly one known defect each, plus a correct
// variant, so that every check in harness/check can be shown failing
// through the real engine over real gRPC — and the other checks shown not
// to blame the same run.
//
// StartChat serves a short, independent chat server (bidikit.chat.v1) with
// one ChatDefect, or none; StartCollab and StartGame serve workshop servers
// whose one defect is a collab server that does not converge and a game
// server that believes every move. Each defect's code path is marked with a
// comment "// defect: <Name>".
//
// Every server listens on free loopback ports and offers what the checks
// read: the gRPC health service and channelz, and an admin HTTP listener
// with /debug/pprof/ and /healthz.
package broken

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
)

// Server is one running server of the corpus. Its gRPC listener, admin
// listener and every goroutine its handlers started belong to it until Stop.
type Server struct {
	addr, admin string
	once        sync.Once
	stop        func()
}

// Addr is the gRPC address (host:port).
func (s *Server) Addr() string { return s.addr }

// AdminURL is the admin HTTP base URL (http://host:port) with /debug/pprof/
// and /healthz: what the leaks check reads.
func (s *Server) AdminURL() string { return "http://" + s.admin }

// Stop stops the server and waits for every goroutine it started,
// including those a defect leaked. Safe to call twice.
func (s *Server) Stop() { s.once.Do(s.stop) }

// maxRecvMsgSize bounds one received message, as the reference's default
// does.
const maxRecvMsgSize = 64 << 10

// serve serves a gRPC server set up by register on a free loopback port,
// with health and channelz, plus the admin endpoints on another. stopSvc
// runs first at Stop: it releases whatever the service's handlers wait on
// that gRPC's own Stop does not end. It returns once both ports listen.
func serve(what string, register func(*grpc.Server), stopSvc func()) (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("broken %s server: listen for gRPC on 127.0.0.1:0: %w", what, err)
	}
	alis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("broken %s server: listen for admin HTTP on 127.0.0.1:0: %w", what, err)
	}
	// WaitForHandlers: Stop returns only after every handler has returned,
	// so nothing a handler starts on its way out outlives Stop. Messages
	// over 64 KiB are refused by grpc-go with RESOURCE_EXHAUSTED, as the
	// reference refuses them (its --max-recv-msg-size default).
	gs := grpc.NewServer(grpc.WaitForHandlers(true), grpc.MaxRecvMsgSize(maxRecvMsgSize))
	register(gs)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	channelzsvc.RegisterChannelzServiceToServer(gs)
	admin := &http.Server{Handler: adminMux(), ReadHeaderTimeout: 10 * time.Second}

	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(lis) })
	wg.Go(func() {
		if err := admin.Serve(alis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("broken server: admin HTTP failed", "server", what, "addr", alis.Addr().String(), "err", err)
		}
	})
	return &Server{addr: lis.Addr().String(), admin: alis.Addr().String(), stop: func() {
		hs.Shutdown()
		stopSvc()
		gs.Stop()
		_ = admin.Close()
		wg.Wait()
	}}, nil
}

// adminMux serves /debug/pprof/ (net/http/pprof) and /healthz.
func adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}
