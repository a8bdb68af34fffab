package engine

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/bidikit/bidikit/harness/fault"
)

// Progress is a snapshot of a running scenario for a live display.
type Progress struct {
	Scenario string
	Elapsed  time.Duration
	Duration time.Duration
	// Connected is the number of open client streams.
	Connected int
	Clients   int
	// MessagesPerSec is sends per second over the last progress interval.
	MessagesPerSec float64
	Sent           int64
	Delivered      int64
	Errors         int
}

// options are Run's settings; defaults first (see defaultOptions).
type options struct {
	target      string
	creds       credentials.TransportCredentials // nil = insecure
	token       string
	progress    func(Progress)
	progressInt time.Duration
	adminURL    string
	faultServer fault.Server
	dialTimeout time.Duration
	stopGrace   time.Duration
	log         *slog.Logger
	flushEvery  time.Duration
	// shardIndex of shardCount (0 of 1: the whole run); see WithShard.
	shardIndex, shardCount int
	tap                    Tap
}

func defaultOptions() options {
	return options{
		progressInt: 250 * time.Millisecond,
		dialTimeout: 5 * time.Second,
		stopGrace:   5 * time.Second,
		log:         slog.Default(),
		flushEvery:  20 * time.Millisecond,
		shardCount:  1,
	}
}

// Option configures Run. Options that can fail return their error from Run.
type Option func(*options) error

// WithTarget sets the server's gRPC address (required).
//
//	engine.Run(ctx, s, engine.WithTarget("127.0.0.1:50051"))
func WithTarget(addr string) Option {
	return func(o *options) error {
		if addr == "" {
			return errors.New("engine: empty target address")
		}
		o.target = addr
		return nil
	}
}

// WithInsecure dials without TLS (the default).
//
//	engine.Run(ctx, s, engine.WithTarget(addr), engine.WithInsecure())
func WithInsecure() Option {
	return func(o *options) error { o.creds = nil; return nil }
}

// WithTLS dials with TLS using cfg (root CAs, client certificate, server
// name).
//
//	engine.Run(ctx, s, engine.WithTarget(addr), engine.WithTLS(&tls.Config{ServerName: "chat"}))
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) error {
		if cfg == nil {
			return errors.New("engine: nil TLS config")
		}
		o.creds = credentials.NewTLS(cfg)
		return nil
	}
}

// WithToken makes every client authenticate with this bearer token instead of
// its own user id (dev mode accepts any token as the user id).
//
//	engine.Run(ctx, s, engine.WithTarget(addr), engine.WithToken(os.Getenv("TOKEN")))
func WithToken(token string) Option {
	return func(o *options) error { o.token = token; return nil }
}

// WithProgress calls fn about every interval (0 = 250 ms) from one goroutine
// while the scenario runs. fn must not block for long.
//
//	engine.Run(ctx, s, engine.WithProgress(func(p engine.Progress) { bar.Set(p) }, 0))
func WithProgress(fn func(Progress), interval time.Duration) Option {
	return func(o *options) error {
		o.progress = fn
		if interval > 0 {
			o.progressInt = interval
		}
		return nil
	}
}

// WithServerEnv gives checkers the target's admin HTTP base URL (for
// /metrics, /healthz, /debug/pprof/); "" = unknown.
//
//	engine.Run(ctx, s, engine.WithServerEnv("http://127.0.0.1:9090"))
func WithServerEnv(adminURL string) Option {
	return func(o *options) error { o.adminURL = adminURL; return nil }
}

// WithFaultEnv hands server-level faults the controller of a server process
// the caller spawned (kill -9, restart).
//
//	engine.Run(ctx, s, engine.WithFaultEnv(spawned))
func WithFaultEnv(srv fault.Server) Option {
	return func(o *options) error { o.faultServer = srv; return nil }
}

// WithDialTimeout bounds how long Run waits for the target to answer before
// failing (default 5 s).
//
//	engine.Run(ctx, s, engine.WithDialTimeout(2*time.Second))
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("engine: dial timeout %v must be positive", d)
		}
		o.dialTimeout = d
		return nil
	}
}

// WithLogger sets the logger for harness-side problems (default slog.Default).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l != nil {
			o.log = l
		}
		return nil
	}
}
