package bench

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/metrics"

	"github.com/bidikit/bidikit/reference"
)

// Server is an in-process reference server started for a benchmark.
type Server struct {
	srv    *reference.Server
	cancel context.CancelFunc
}

// Addr is the server's gRPC address; AdminURL its admin HTTP base URL.
func (s *Server) Addr() string     { return s.srv.Addr() }
func (s *Server) AdminURL() string { return "http://" + s.srv.AdminAddr() }

// Stop shuts the server down gracefully and waits for it.
func (s *Server) Stop() error {
	s.cancel()
	return s.srv.Wait()
}

// StartServer starts the reference server in-process with chat, collab and
// game on free loopback ports, memory storage and development auth
// (reference.StartWith), tuned for benchmarks: the per-user rate limits of
// chat sends and collab submits are off (a benchmark is one user flooding on
// purpose), send queues are larger, the connection and stream limits are
// lifted, and game matches hold up to maxPlayers players (0 = the default).
// Everything else is the documented default. Stop it with Server.Stop.
func StartServer(ctx context.Context, maxPlayers int, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	srv, err := reference.StartWith(sctx, log, func(c *reference.Config) {
		c.Chat.SendRate, c.Chat.FloodFactor = 0, 0
		c.Chat.QueueMessages, c.Chat.QueueBytes = 16<<10, 32<<20
		c.Collab.SubmitRate = 0
		c.Collab.QueueEvents, c.Collab.QueueBytes = 64<<10, 64<<20
		if maxPlayers > 0 {
			c.Game.MaxPlayers = maxPlayers
		}
		c.Options.MaxConcurrentStreams, c.Options.MaxConnections = 1<<20, 1<<20
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bench: reference server: %w", err)
	}
	return &Server{srv: srv, cancel: cancel}, nil
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
