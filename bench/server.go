package bench

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/metrics"

	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/chat"
	"github.com/bidikit/bidikit/reference/collab"
	"github.com/bidikit/bidikit/reference/game"
	"github.com/bidikit/bidikit/reference/store"
)

// Server is an in-process reference server started for a benchmark.
type Server struct {
	srv    *reference.Server
	cancel context.CancelFunc
	st     store.Store
}

// Addr is the server's gRPC address; AdminURL its admin HTTP base URL.
func (s *Server) Addr() string     { return s.srv.Addr() }
func (s *Server) AdminURL() string { return "http://" + s.srv.AdminAddr() }

// Stop shuts the server down gracefully and waits for it.
func (s *Server) Stop() error {
	s.cancel()
	err := s.srv.Wait()
	_ = s.st.Close()
	return err
}

// StartServer starts the reference server in-process with chat, collab and
// game on free loopback ports, memory storage and development auth, tuned
// for benchmarks: the per-user rate limits of chat sends and collab submits
// are off (a benchmark is one user flooding on purpose), send queues are
// larger, and game matches hold up to maxPlayers players (0 = the default).
// Everything else is the documented default. Stop it with Server.Stop.
func StartServer(ctx context.Context, maxPlayers int, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg, set := reference.NewRegistry()
	st := store.NewMemory(chat.DefaultConfig().History)

	cc := chat.DefaultConfig()
	cc.SendRate = 0
	cc.FloodFactor = 0
	cc.QueueMessages = 16 << 10
	cc.QueueBytes = 32 << 20
	chatSvc, err := chat.New(cc, st, set, nil, log)
	if err != nil {
		return nil, fmt.Errorf("bench: chat service: %w", err)
	}
	co := collab.DefaultConfig()
	co.SubmitRate = 0
	co.QueueEvents = 64 << 10
	co.QueueBytes = 64 << 20
	collabSvc, err := collab.New(co, st, set, log)
	if err != nil {
		return nil, fmt.Errorf("bench: collab service: %w", err)
	}
	gc := game.DefaultConfig()
	if maxPlayers > 0 {
		gc.MaxPlayers = maxPlayers
	}
	gameSvc, err := game.New(gc, set, log)
	if err != nil {
		return nil, fmt.Errorf("bench: game service: %w", err)
	}
	srv, err := reference.New(reference.Options{
		Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Authenticator:        auth.DevMode{},
		MaxConcurrentStreams: 1 << 20,
		MaxConnections:       1 << 20,
		Registry:             reg, Metrics: set, Logger: log,
	}, chatSvc, collabSvc, gameSvc)
	if err != nil {
		return nil, fmt.Errorf("bench: reference server: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := srv.Start(sctx); err != nil {
		cancel()
		return nil, fmt.Errorf("bench: start reference server: %w", err)
	}
	return &Server{srv: srv, cancel: cancel, st: st}, nil
}

// ProcessMemory reads this process's memory from the Go runtime: the bytes
// mapped by the Go runtime (runtime/metrics /memory/classes/total:bytes
// minus released pages). It stands in for RSS when server and load
// generator share the process; it does not count C allocations.
func ProcessMemory() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}
