package engine

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/bidikit/bidikit/harness/fault"
)

// Progress is a snapshot of a running scenario for a live display.
type Progress struct {
	Scenario string
	// Phase is what the run is doing (PhaseStarting .. PhaseJudging).
	Phase    Phase
	Elapsed  time.Duration
	Duration time.Duration
	// Connected is the number of open client streams.
	Connected int
	Clients   int
	// MessagesPerSec is sends per second over the last progress interval;
	// DeliveredPerSec deliveries (chat messages, collab remote ops, game
	// updates) per second over it.
	MessagesPerSec  float64
	DeliveredPerSec float64
	Sent            int64
	Delivered       int64
	Acked           int64
	Errors          int
	// ErrorsByCode counts errors so far by status code name, keyed like
	// result.Scenario.Errors (a copy: the callback may keep it).
	ErrorsByCode map[string]int
	// P99 is the send-to-delivery latency p99 so far (0 before the first
	// delivery).
	P99 time.Duration
	// Violated lists the checks that judge live (check.Live) and have found
	// violations so far, in the scenario's check order (a copy).
	Violated []Violation
	// NewViolation marks a report made at once because a check found its
	// first violation, between two progress intervals.
	NewViolation bool
}

// Phase is a stage of Run, for progress displays.
type Phase string

const (
	PhaseStarting Phase = "starting" // checks take their baselines
	PhaseRunning  Phase = "running"  // clients run
	PhaseStopping Phase = "stopping" // clients end their streams
	PhaseSettling Phase = "settling" // the scenario's settle time
	PhaseJudging  Phase = "judging"  // checkers give their verdicts
)

// Violation is a live check's violations so far: its name, how many, and
// when (time since the run's start) the first was seen.
type Violation struct {
	Check      string
	Violations int
	At         time.Duration
}

// options are Run's settings; defaults first (see defaultOptions).
type options struct {
	// targets are the server's gRPC addresses, in failover order (see
	// WithTargets); never empty after Run's option pass.
	targets     []string
	runID       string                           // see WithRunID; set by Run when empty
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
	failFast               bool
	// tlsCfg is what WithTLS gave: HTTP/2 attackers dial with it.
	tlsCfg *tls.Config
	// allowRemoteAttacks lets HTTP/2 attack roles target a non-loopback
	// address (see WithAllowRemoteAttacks, h2attack.go).
	allowRemoteAttacks bool
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

// WithRunID sets the run's id, which every chat client_msg_id and collab
// client_id carries, so that a server which keeps state between runs (a
// durable or clustered one) never takes this run's messages for resends of
// an earlier run's. Default: 12 random hex digits per Run. Shards of one
// run may share it or not: their clients differ anyway.
//
//	engine.Run(ctx, s, engine.WithTarget(addr), engine.WithRunID("ci-1234"))
func WithRunID(id string) Option {
	return func(o *options) error {
		if err := CheckRunID(id); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		o.runID = id
		return nil
	}
}

// CheckRunID says what is wrong with a run id (see WithRunID), if anything.
func CheckRunID(id string) error {
	if id == "" || len(id) > 32 || strings.ContainsAny(id, " \t\n/") {
		return fmt.Errorf("run id %q: want 1-32 characters without spaces or '/'", id)
	}
	return nil
}

// WithTarget sets the server's gRPC address (host:port; required unless
// WithTargets is given). A comma-separated list is the same as WithTargets.
//
//	engine.Run(ctx, s, engine.WithTarget("127.0.0.1:50051"))
func WithTarget(addr string) Option {
	return func(o *options) error {
		ts, err := ParseTargets(addr)
		if err != nil {
			return fmt.Errorf("engine: target: %w", err)
		}
		o.targets = ts
		return nil
	}
}

// WithTargets sets several instances of one service (a cluster) as the
// target. Virtual clients spread over them and fail over: the clients of
// connection g (client i is on connection i/StreamsPerConn) dial the list
// rotated to start at addrs[g mod n], through grpc-go's pick_first policy,
// so each prefers its own instance and, when it does not answer, takes the
// next one in the list (wrapping around). A broken stream's reconnect thus
// lands on the next reachable instance. Run's preflight needs one instance
// to answer; connection-level faults need a single target.
//
//	engine.Run(ctx, s, engine.WithTargets("10.0.0.1:7070", "10.0.0.2:7070"))
func WithTargets(addrs ...string) Option {
	return func(o *options) error {
		if len(addrs) == 0 {
			return errors.New("engine: WithTargets needs at least one address")
		}
		for i, a := range addrs {
			if strings.Contains(a, ",") {
				return fmt.Errorf("engine: WithTargets: address %d %q holds a comma; give one address per argument", i+1, a)
			}
		}
		ts, err := ParseTargets(strings.Join(addrs, ","))
		if err != nil {
			return fmt.Errorf("engine: targets: %w", err)
		}
		o.targets = ts
		return nil
	}
}

// ParseTargets splits a comma-separated list of host:port addresses
// (spaces around an element are ignored). The error names the bad element
// (an empty one, one that is not host:port, one listed twice); callers
// prefix what the list was (a flag, an option).
func ParseTargets(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("no address given; want host:port (e.g. 127.0.0.1:7070), or a comma-separated list of them")
	}
	parts := strings.Split(list, ",")
	out := make([]string, 0, len(parts))
	seen := map[string]bool{}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("element %d of %q is empty; want host:port[,host:port...]", i+1, list)
		}
		_, port, err := net.SplitHostPort(p)
		if err == nil && port == "" {
			err = errors.New("missing port")
		}
		if err != nil {
			if ae, ok := err.(*net.AddrError); ok {
				err = errors.New(ae.Err)
			}
			return nil, fmt.Errorf("%q: %v; want host:port (e.g. 127.0.0.1:7070)", p, err)
		}
		if seen[p] {
			return nil, fmt.Errorf("%q is listed twice", p)
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}

// WithInsecure dials without TLS (the default).
//
//	engine.Run(ctx, s, engine.WithTarget(addr), engine.WithInsecure())
func WithInsecure() Option {
	return func(o *options) error { o.creds, o.tlsCfg = nil, nil; return nil }
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
		o.tlsCfg = cfg
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
// from the checks' baselines until the verdicts are in (Progress.Phase says
// which stage), and at once when a check finds its first violation. fn
// must not block for long.
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

// WithFailFast ends the scenario at the first violation a check finds
// while it runs (a check.Live checker, a threshold crossing its bound):
// the clients stop as at the scenario's end, every check judges what was
// seen, and the result is marked Interrupted with the check and when (k6's
// abortOnFail). Checks that judge only at the end cannot trigger it.
//
//	engine.Run(ctx, s, engine.WithTarget(addr), engine.WithFailFast())
func WithFailFast() Option {
	return func(o *options) error { o.failFast = true; return nil }
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

// WithStopGrace sets how long a client waits, after its CloseSend, for the
// server to end the stream (default 5s; one that does not is a
// DEADLINE_EXCEEDED stream end that status-codes counts), and bounds the
// end-of-run reads of the server's state. A clustered server electing a
// stream leader may answer a commit in flight, and so end a half-closed
// stream, later than 5s.
func WithStopGrace(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("engine: stop grace %v must be positive", d)
		}
		o.stopGrace = d
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
