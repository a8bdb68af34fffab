package workshop

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/loopserve"
	"github.com/bidikit/bidikit/reference"
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
func AdminMux() *http.ServeMux { return loopserve.AdminMux() }

// Start serves ex's broken server on addr (gRPC, with health, reflection
// and channelz) and the admin endpoints on adminAddr ("" picks a free
// loopback port). It returns once both listen. No authentication: the
// broken servers take the bearer token as the user id.
func Start(ex Exercise, addr, adminAddr string) (*Server, error) {
	srv, err := loopserve.Serve(loopserve.Options{What: fmt.Sprintf("exercise %d", ex.Number), Addr: addr, AdminAddr: adminAddr},
		ex.Register) // its stop first: handlers that never end on their own watch it
	if err != nil {
		return nil, err
	}
	return &Server{Addr: srv.Addr(), AdminURL: srv.AdminURL(), stop: srv.Stop}, nil
}

// StartReference serves the reference server on free loopback ports, with
// memory storage and development auth, the defaults of `bidikit serve`
// (reference.StartWith), for an exercise of service (chat, collab or game).
// log nil discards the server's logs.
func StartReference(svcName string, log *slog.Logger) (*Server, error) {
	switch svcName {
	case scenario.Chat, scenario.Collab, scenario.Game:
	default:
		return nil, fmt.Errorf("reference: unknown service %q (chat, collab or game)", svcName)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := reference.StartWith(ctx, log, func(c *reference.Config) { c.Options.GracePeriod = 3 * time.Second })
	if err != nil {
		cancel()
		return nil, fmt.Errorf("reference %s server: %w", svcName, err)
	}
	return &Server{Addr: srv.Addr(), AdminURL: "http://" + srv.AdminAddr(), stop: func() {
		cancel()
		_ = srv.Wait()
	}}, nil
}
