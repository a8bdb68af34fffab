// Package suite runs a list of scenarios against one target and gathers
// their results into a result.Run: the loop `bidikit run` and `workshop
// check` share (and any program that gates on a suite). It starts the
// target (the in-process reference server, a `bidikit serve` subprocess, a
// server of the caller's, or given addresses in failover order), gives each
// scenario its raw shard section, and keeps the rules between scenarios:
// once the target is unreachable or refuses the clients, later scenarios
// are "not tried"; once the run is interrupted, "not run". Reports are the
// caller's (harness/report).
package suite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bidikit/bidikit/harness/engine"
	_ "github.com/bidikit/bidikit/harness/engine/custom" // service: custom (issue #16)
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/harness/shard"
	"github.com/bidikit/bidikit/harness/spawn"
	"github.com/bidikit/bidikit/reference"
)

// Target says what the scenarios run against. The zero value starts the
// reference server in-process.
type Target struct {
	// Addrs are the server's addresses, in failover order; empty starts a
	// server (Spawn, Start, or the in-process reference).
	Addrs []string
	// AdminURL is the server's admin HTTP base URL (metrics, pprof); a
	// server the suite starts supplies its own when this is empty.
	AdminURL string
	// Spawn starts `bidikit serve` as a subprocess (SpawnBinary, default
	// this executable) with its database in a temporary folder, so that
	// kill-server faults can kill and restart it.
	Spawn       bool
	SpawnBinary string
	// Start, when set (and Addrs empty, Spawn false), starts the caller's
	// own in-process server instead of the reference (a workshop's broken
	// server); the suite stops it at Close.
	Start func(ctx context.Context) (Server, error)
	// Log receives the in-process reference server's errors; nil discards.
	Log *slog.Logger
}

// Server is a server the suite started (or the caller's, from Target.Start).
type Server interface {
	// Addr is its gRPC address; AdminURL its admin base URL ("" if none).
	Addr() string
	AdminURL() string
	// Stop ends it and waits until it has.
	Stop()
}

// Started is a target ready for clients; Close stops what the suite started.
type Started struct {
	// Addrs are what clients dial; AdminURL the admin base URL ("" unknown).
	Addrs    []string
	AdminURL string
	// Desc names the target for reports ("in-process reference server
	// 127.0.0.1:PORT", the addresses given, ...).
	Desc  string
	opts  []engine.Option
	close []func()
}

// Start starts t. On error nothing is left running.
func Start(ctx context.Context, t Target) (*Started, error) {
	st := &Started{AdminURL: t.AdminURL}
	switch {
	case len(t.Addrs) > 0:
		st.Addrs, st.Desc = t.Addrs, strings.Join(t.Addrs, ",")
	case t.Spawn:
		dir, err := os.MkdirTemp("", "bidikit-spawn-")
		if err != nil {
			return nil, err
		}
		srv, err := spawn.Start(ctx, spawn.Options{Binary: t.SpawnBinary, DB: filepath.Join(dir, "bidikit.db")})
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("--spawn-server: %w", err)
		}
		st.close = append(st.close, func() { _ = srv.Stop(); _ = os.RemoveAll(dir) })
		st.Addrs, st.Desc = []string{srv.Addr()}, srv.Addr()
		if st.AdminURL == "" {
			st.AdminURL = "http://" + srv.AdminAddr()
		}
		st.opts = append(st.opts, engine.WithFaultEnv(srv))
	case t.Start != nil:
		srv, err := t.Start(ctx)
		if err != nil {
			return nil, err
		}
		st.close = append(st.close, srv.Stop)
		st.Addrs, st.Desc = []string{srv.Addr()}, srv.Addr()
		if st.AdminURL == "" {
			st.AdminURL = srv.AdminURL()
		}
	default:
		log := t.Log
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		srv, err := reference.StartDefault(sctx, log)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("starting the in-process reference server: %w", err)
		}
		st.close = append(st.close, func() { cancel(); _ = srv.Wait() })
		st.Addrs, st.Desc = []string{srv.Addr()}, srv.Addr()
		if st.AdminURL == "" && srv.AdminAddr() != "" {
			st.AdminURL = "http://" + srv.AdminAddr()
		}
	}
	return st, nil
}

// Close stops what Start started, last first. It is safe to call twice.
func (s *Started) Close() {
	for i := len(s.close) - 1; i >= 0; i-- {
		s.close[i]()
	}
	s.close = nil
}

// Options say how Run runs each scenario.
type Options struct {
	// Engine options for every scenario (connection, logger, fail-fast,
	// run id, shard); Run adds the target's.
	Engine []engine.Option
	// Raw, when set, receives each scenario's raw results (a section per
	// scenario) for `report merge`; ShardIndex and ShardCount (0: 1, not
	// sharded) go in its headers.
	Raw                    *shard.Writer
	ShardIndex, ShardCount int
	// RunOne runs one scenario (default engine.Run); the CLI wraps it with
	// its live output.
	RunOne func(ctx context.Context, s *scenario.Scenario, opts []engine.Option) (result.Scenario, error)
	// Explain, when set, may replace an unreachable target's error with a
	// better one (a TLS/plaintext mismatch) and give a fix for the report.
	Explain func(ctx context.Context, err error) (better error, fix string)
}

// Fatal errors: the target became unusable (Fatal.Err) in scenario In.
type Fatal struct {
	In  string
	Err error
}

func (f *Fatal) Error() string { return f.Err.Error() }
func (f *Fatal) Unwrap() error { return f.Err }

// Run runs scs in order against st and returns their results. Failed
// checks are not errors: the error is a *Fatal when the target became
// unreachable (later scenarios are then "not tried") or refused the clients
// of a service (later scenarios of the same service and method are not
// tried; others still run), or wraps engine.ErrInterrupted when ctx ended
// (later scenarios "not run"); the Run holds what was judged either way. A
// raw section that cannot be written is an error too.
func Run(ctx context.Context, scs []*scenario.Scenario, st *Started, o Options) (*result.Run, error) {
	run := &result.Run{Passed: true, Target: st.Desc, StartedAt: time.Now().UTC()}
	if len(scs) > 0 {
		run.Seed = scs[0].Seed
	}
	opts := append(append([]engine.Option(nil), o.Engine...), st.opts...)
	opts = append(opts, engine.WithTargets(st.Addrs...), engine.WithServerEnv(st.AdminURL))
	runOne := o.RunOne
	if runOne == nil {
		runOne = func(ctx context.Context, s *scenario.Scenario, opts []engine.Option) (result.Scenario, error) {
			return engine.Run(ctx, s, opts...)
		}
	}
	count := max(o.ShardCount, 1)
	var fatal *Fatal               // the first: Run's error
	var unreachable *Fatal         // every later scenario is not tried
	refused := map[string]*Fatal{} // by streamKey: later ones of that key are not tried
	for _, s := range scs {
		sopts := opts[:len(opts):len(opts)]
		var sec *shard.Section
		if o.Raw != nil {
			sec = o.Raw.Section(shard.HeaderFor(s, strings.Join(st.Addrs, ","), o.ShardIndex, count))
			sopts = append(sopts, engine.WithTap(sec))
		}
		var res result.Scenario
		switch {
		case ctx.Err() != nil:
			res = notRun(s, fmt.Sprintf("not run: the run was interrupted (%v) before it started", context.Cause(ctx)))
		case unreachable != nil || refused[streamKey(s)] != nil:
			f := unreachable
			if f == nil {
				f = refused[streamKey(s)]
			}
			res = notRun(s, "")
			res.Failure = "not tried: the target already failed " + f.In
		default:
			var err error
			res, err = runOne(ctx, s, sopts)
			// Unreachable, or refused (a wrong token, a service the server
			// does not serve): no later scenario can do better.
			if err != nil && (errors.Is(err, engine.ErrUnreachable) || errors.Is(err, engine.ErrRejected)) {
				f := &Fatal{In: s.Name, Err: err}
				if errors.Is(err, engine.ErrUnreachable) {
					unreachable = f
					if o.Explain != nil {
						if better, fix := o.Explain(ctx, err); fix != "" {
							f.Err = better
							res.Failure = strings.TrimSpace(res.Failure + "; " + fix)
						}
					}
				} else {
					refused[streamKey(s)] = f
				}
				if fatal == nil {
					fatal = f
				}
			}
		}
		if sec != nil {
			if err := sec.Close(res); err != nil {
				return run, err
			}
		}
		if !res.Passed {
			run.Passed = false
		}
		run.Scenarios = append(run.Scenarios, res)
	}
	if ctx.Err() != nil {
		run.Interrupted = fmt.Sprintf("interrupted (%v)", context.Cause(ctx))
		run.Passed = false
		return run, fmt.Errorf("%s: %w", run.Interrupted, engine.ErrInterrupted)
	}
	if fatal != nil {
		return run, fatal
	}
	return run, nil
}

// streamKey names what a scenario's clients open: its service, and for a
// custom protocol its method too (a server refuses a method, not a run).
func streamKey(s *scenario.Scenario) string {
	if s.Protocol != nil {
		return s.Service + " " + s.Protocol.Method.Value
	}
	return s.Service
}

// notRun is the result of a scenario the suite did not run.
func notRun(s *scenario.Scenario, interrupted string) result.Scenario {
	return result.Scenario{Name: s.Name, File: s.File, Service: s.Service, Seed: s.Seed, Errors: map[string]int{},
		Interrupted: interrupted}
}
