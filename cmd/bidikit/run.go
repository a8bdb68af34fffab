package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/harness/shard"
	"github.com/bidikit/bidikit/harness/suite"
)

func init() { rootCmd.AddCommand(newRunCmd()) }

// runFlags are `bidikit run`'s flags.
type runFlags struct {
	target        string
	conn          connFlags
	seed          int64
	reports       reportFlags
	sets          []string
	adminURL      string
	spawnServer   bool
	quiet         bool
	dialTimeout   time.Duration
	shard         string
	runID         string
	shardIndexEnv string
	shardCount    int
	rawOut        string
	progressEvery time.Duration
	failFast      bool
	allowRemote   bool // HTTP/2 attack roles may target a non-loopback address
	stopGrace     time.Duration
}

// newRunCmd builds `bidikit run`: load scenarios, find or start the target,
// run each scenario through the engine, render the reports, and map the
// outcome to the exit code.
func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:     "run [files or folders of scenarios...]",
		Short:   "Run scenario files against a server and report verdicts",
		Long:    runLong,
		Example: runExample,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScenarios(cmd, args, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.target, "target", "", "gRPC address (host:port) of the server under test, or a comma-separated failover list of a cluster's instances (client i prefers the (i mod n)-th); empty starts the reference server in-process")
	f.conn.registerTLS(fl)
	f.conn.registerToken(fl, "bearer token every client presents (default: each client's own user id, which dev-auth servers accept)")
	fl.Int64Var(&f.seed, "seed", 0, "override every scenario's seed")
	fl.StringArrayVar(&f.sets, "set", nil, "override `KEY=VALUE` in every scenario, checked as the file is (repeatable): duration=10s, roles.honest.count=50, roles.*.rate=1/s, checks.leaks.settle=5s, thresholds.honest.p99=50ms")
	f.reports.register(fl)
	fl.StringVar(&f.adminURL, "admin-url", "", "the target's admin HTTP base URL (http://host:port) for leak checks")
	fl.BoolVar(&f.spawnServer, "spawn-server", false, "start 'bidikit serve' as a subprocess (memory-less: SQLite in a temp dir) so server faults can kill and restart it")
	fl.BoolVar(&f.quiet, "quiet", false, "no progress lines, no server logs, and no text summary on the console beside the reports (text to stdout stays the default report)")
	fl.DurationVar(&f.dialTimeout, "dial-timeout", 5*time.Second, "how long to wait for the target to answer before giving up")
	fl.StringVar(&f.runID, "run-id", "", "id carried by every chat client_msg_id and collab client_id, so a server that keeps state between runs never takes this run's messages for resends of an earlier run's (default: random per scenario; give shards of one run the same one to trace them)")
	fl.StringVar(&f.shard, "shard", "", "run only shard i of n of every scenario's clients, 1-based (1/3 .. 3/3); needs --target")
	fl.StringVar(&f.shardIndexEnv, "shard-index-env", "", "read this shard's 0-based index from environment variable NAME (Kubernetes: JOB_COMPLETION_INDEX); needs --shard-count")
	fl.IntVar(&f.shardCount, "shard-count", 0, "number of shards, with --shard-index-env")
	fl.StringVar(&f.rawOut, "raw-out", "", "write this run's raw results (events, histograms) to FILE for 'bidikit report merge'")
	fl.DurationVar(&f.progressEvery, "progress-interval", 5*time.Second, "when stderr is not a terminal, print one progress line per running scenario this often (on a terminal: a live bar)")
	fl.BoolVar(&f.failFast, "fail-fast", false, "end a scenario at the first violation a check finds while it runs (or a threshold crossing its bound); the checks then judge what was seen")
	fl.DurationVar(&f.stopGrace, "stop-grace", 5*time.Second, "how long a client waits for the server to end its stream after CloseSend (a stream not ended by then counts against status-codes)")
	fl.BoolVar(&f.allowRemote, "allow-remote-attacks", false, "let HTTP/2 attack roles (rapid-reset, ping-flood, ...) target an address that is not loopback; only servers you own, on your own network")
	return cmd
}

func (f *runFlags) engineOptions() ([]engine.Option, error) {
	cfg, err := f.conn.tlsConfig()
	if err != nil {
		return nil, err
	}
	if f.dialTimeout <= 0 {
		return nil, usagef("--dial-timeout %v must be positive", f.dialTimeout)
	}
	opts := []engine.Option{engine.WithDialTimeout(f.dialTimeout)}
	if f.conn.token != "" {
		opts = append(opts, engine.WithToken(f.conn.token))
	}
	if cfg == nil {
		return append(opts, engine.WithInsecure()), nil
	}
	return append(opts, engine.WithTLS(cfg)), nil
}

// runPlan is a validated `bidikit run`: what to run, where, and how.
type runPlan struct {
	outs                   []output
	opts                   []engine.Option
	targets                []string // empty: the spawned or in-process server
	shardIndex, shardCount int
	scs                    []*scenario.Scenario
}

// plan validates f and args (usage errors name the flag) and loads the
// scenarios.
func (f *runFlags) plan(cmd *cobra.Command, args []string) (*runPlan, error) {
	p := &runPlan{}
	var err error
	if p.outs, err = f.reports.outputs(); err != nil {
		return nil, err
	}
	if p.opts, err = f.engineOptions(); err != nil {
		return nil, err
	}
	if f.spawnServer && f.target != "" {
		return nil, usagef("--spawn-server and --target exclude each other: the spawned server is the target")
	}
	if f.target != "" {
		if p.targets, err = engine.ParseTargets(f.target); err != nil {
			return nil, usagef("--target: %v", err)
		}
	}
	if p.shardIndex, p.shardCount, err = f.shardFlags(os.Getenv); err != nil {
		return nil, err
	}
	if p.shardCount > 1 && f.target == "" {
		return nil, usagef("--shard %d/%d needs --target: every shard must drive the same server", p.shardIndex+1, p.shardCount)
	}
	sets, err := parseSets(f.sets)
	if err != nil {
		return nil, err
	}
	if p.scs, err = loadScenarios(args, sets); err != nil {
		return nil, usageError{err}
	}
	if len(p.scs) == 0 {
		return nil, usagef("no scenarios to run")
	}
	if f.runID != "" {
		if err := engine.CheckRunID(f.runID); err != nil {
			return nil, usagef("--run-id: %v", err)
		}
		p.opts = append(p.opts, engine.WithRunID(f.runID))
	}
	if f.progressEvery <= 0 {
		return nil, usagef("--progress-interval %v must be positive", f.progressEvery)
	}
	if cmd.Flags().Changed("seed") {
		for _, s := range p.scs {
			s.Seed = f.seed
		}
	}
	if f.failFast {
		p.opts = append(p.opts, engine.WithFailFast())
	}
	if f.allowRemote {
		p.opts = append(p.opts, engine.WithAllowRemoteAttacks())
	}
	if f.stopGrace <= 0 {
		return nil, usagef("--stop-grace %v must be positive", f.stopGrace)
	}
	p.opts = append(p.opts, engine.WithStopGrace(f.stopGrace))
	if p.shardCount > 1 {
		p.opts = append(p.opts, engine.WithShard(p.shardIndex, p.shardCount))
	}
	return p, nil
}

// interruptible returns a context that the first SIGINT or SIGTERM ends:
// the run then winds down (stop the clients, judge, write the reports), and
// a second signal quits at once. Call the returned func when done.
func interruptible(cmd *cobra.Command) (context.Context, func()) {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	signalled := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			stop()
			if cmd.Context().Err() == nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "bidikit: %v: stopping the clients, judging what was seen and writing the reports (again to quit at once)\n", context.Cause(ctx))
			}
		case <-signalled:
		}
	}()
	return ctx, func() { close(signalled); stop() }
}

func runScenarios(cmd *cobra.Command, args []string, f *runFlags) error {
	p, err := f.plan(cmd, args)
	if err != nil {
		return err
	}
	ctx, done := interruptible(cmd)
	defer done()
	logW := cmd.ErrOrStderr()
	if f.quiet {
		logW = io.Discard
	}
	opts := append(p.opts, engine.WithLogger(slog.New(slog.NewTextHandler(logW, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	st, err := suite.Start(ctx, suite.Target{Addrs: p.targets, AdminURL: f.adminURL, Spawn: f.spawnServer,
		// Only the in-process server's errors: its dev-auth and memory
		// storage warnings are what `run` without --target means.
		Log: slog.New(slog.NewTextHandler(logW, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		return err
	}
	defer st.Close()
	// fileErr is the first scenario file found wrong only when its run
	// started (a custom protocol mapping checked against the server's
	// reflection, issue #16): exit 2, as for any bad scenario file.
	var fileErr error
	so := suite.Options{Engine: opts, ShardIndex: p.shardIndex, ShardCount: p.shardCount,
		RunOne: func(ctx context.Context, s *scenario.Scenario, opts []engine.Option) (result.Scenario, error) {
			res, err := runOne(ctx, cmd.ErrOrStderr(), s, opts, f.liveMode(cmd), f.progressEvery)
			if se := (*scenario.Error)(nil); fileErr == nil && errors.As(err, &se) {
				fileErr = err
			}
			return res, err
		}}
	if len(p.targets) > 0 {
		// A target that did not answer may speak the other of TLS and
		// plaintext: say so, with the flag to change.
		so.Explain = func(ctx context.Context, err error) (error, string) {
			var me *mismatchError
			if errors.As(explain(ctx, err, p.targets, f.conn.wantTLS()), &me) {
				return me, me.m.Fix()
			}
			return err, ""
		}
	}
	if f.rawOut != "" {
		if so.Raw, err = shard.Create(f.rawOut); err != nil {
			return usagef("--raw-out: %v", err)
		}
		defer func() {
			if so.Raw != nil {
				_ = so.Raw.Close()
			}
		}()
	}
	run, runErr := suite.Run(ctx, p.scs, st, so)
	var fatal *suite.Fatal
	if runErr != nil && !errors.As(runErr, &fatal) && !errors.Is(runErr, engine.ErrInterrupted) {
		return runErr // a raw section that could not be written
	}
	sink := reportSink{stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), quiet: f.quiet, getenv: os.Getenv}
	if err := sink.write(p.outs, run); err != nil {
		return err
	}
	if so.Raw != nil {
		err := so.Raw.Close()
		so.Raw = nil
		if err != nil {
			return err
		}
	}
	if fileErr != nil {
		return usageError{fileErr}
	}
	return runExit(cmd, run, fatal, p)
}

// runExit is the run's outcome as an error (nil: exit 0).
func runExit(cmd *cobra.Command, run *result.Run, fatal *suite.Fatal, p *runPlan) error {
	switch {
	case fatal != nil:
		return fatal.Err
	case run.Interrupted != "":
		return fmt.Errorf("%s: the reports hold what was judged until then", run.Interrupted)
	case p.shardCount > 1:
		// A shard's verdicts are partial: the merge decides the run.
		fmt.Fprintf(cmd.ErrOrStderr(), "bidikit: shard %d/%d: its checks cover only this shard's clients; 'bidikit report merge' judges the run\n", p.shardIndex+1, p.shardCount)
		for _, res := range run.Scenarios {
			if res.Failure != "" {
				return errChecksFailed
			}
		}
		return nil
	case !run.OK(): // a failed or not-measurable check, or a scenario not run
		return errChecksFailed
	}
	return nil
}

// liveMode is how runOne shows a running scenario: nothing with --quiet, a
// bar on a terminal, plain lines otherwise.
func (f *runFlags) liveMode(cmd *cobra.Command) liveMode {
	switch {
	case f.quiet:
		return liveNone
	case isTerminal(cmd.ErrOrStderr()):
		return liveBar
	}
	return livePlain
}

// shardFlags validates --shard, or --shard-index-env with --shard-count, and
// returns the 0-based shard index and the count (0 of 1 when unsharded).
func (f *runFlags) shardFlags(getenv func(string) string) (index, count int, err error) {
	switch {
	case f.shard != "" && (f.shardIndexEnv != "" || f.shardCount != 0):
		return 0, 0, usagef("--shard i/n and --shard-index-env/--shard-count exclude each other")
	case f.shard != "":
		i, n, ok := parseShard(f.shard)
		switch {
		case !ok:
			return 0, 0, usagef("--shard %q: want i/n with whole numbers, e.g. 2/3 (shards are numbered from 1)", f.shard)
		case n < 1:
			return 0, 0, usagef("--shard %q: the number of shards must be at least 1", f.shard)
		case i < 1 || i > n:
			return 0, 0, usagef("--shard %q: shard %d of %d does not exist; shards are numbered 1..%d", f.shard, i, n, n)
		}
		return i - 1, n, nil
	case f.shardIndexEnv != "" || f.shardCount != 0:
		if f.shardIndexEnv == "" || f.shardCount == 0 {
			return 0, 0, usagef("--shard-index-env and --shard-count go together")
		}
		if f.shardCount < 1 {
			return 0, 0, usagef("--shard-count %d: the number of shards must be at least 1", f.shardCount)
		}
		v := getenv(f.shardIndexEnv)
		if v == "" {
			return 0, 0, usagef("--shard-index-env %s: the environment variable is not set", f.shardIndexEnv)
		}
		i, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || i < 0 || i >= f.shardCount {
			return 0, 0, usagef("--shard-index-env %s=%q: want a 0-based index in 0..%d", f.shardIndexEnv, v, f.shardCount-1)
		}
		return i, f.shardCount, nil
	}
	return 0, 1, nil
}

// parseShard reads "i/n".
func parseShard(v string) (i, n int, ok bool) {
	a, b, found := strings.Cut(strings.TrimSpace(v), "/")
	if !found {
		return 0, 0, false
	}
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	return i, n, err1 == nil && err2 == nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runLong is the long help of newRunCmd.
const runLong = `run loads scenario files (YAML; folders are searched recursively) and runs
each one: virtual clients with real gRPC streams, the scenario's faults, then
its checks. With no arguments it runs the smoke suite (scenarios/smoke, or the
copy built into the binary).

Without --target the reference server is started in-process on loopback, so
the command works on a fresh clone. With --spawn-server it is started as a
'bidikit serve' subprocess instead, which server faults (kill-server) need.

--target may list several instances of one clustered service, comma-separated
(--target 10.0.0.1:7070,10.0.0.2:7070,10.0.0.3:7070). Clients spread over them
and fail over: client i (its connection, with streams_per_conn) prefers the
(i mod n)-th instance and, when that one does not answer, tries the following
ones in list order, wrapping around, so the clients of an instance that dies
reconnect to the next live one. The run starts when at least one instance
answers; the silent ones are named in a warning. Health and leak checks ask
every instance that answered. Connection faults (latency, reset, ...) need a
single target.

` + reportHelp + `

Sharded runs (past one machine): --shard i/n runs the i-th of n disjoint
shares of every scenario's clients (1-based: 1/3, 2/3, 3/3; the same seed
gives every machine the same partition) against a shared --target, and
--raw-out FILE writes the shard's raw results. 'bidikit report merge' judges
all shards' files together. Stream faults act on this shard's share of the
chosen clients; connection faults act in every shard (each has its own proxy
for its own clients); server faults need --spawn-server, so a sharded run
cannot use them. Kubernetes Indexed Jobs number pods from 0:
--shard-index-env JOB_COMPLETION_INDEX --shard-count n reads the 0-based
index from the environment instead (see deploy/kubernetes).

--set KEY=VALUE (repeatable) changes every scenario before it is checked
and run, so CI can shorten a suite without copying files: --set duration=10s
--set roles.honest.count=50. KEY is a path of the file's keys; roles are
addressed by name (roles.*.FIELD is every role), listed checks by name
(checks.leaks.settle), faults by index or name (faults[0].at), thresholds by
role (thresholds.honest.p99). A key that names nothing, or a value the file's
checks refuse, is a usage error naming the --set (exit 2). See
docs/scenarios.md.

` + connHelp + `

Before any client starts, each scenario opens one probe stream of its service
with the clients' token; a target that refuses it (UNAUTHENTICATED,
PERMISSION_DENIED, UNIMPLEMENTED) ends the run at once, exit status 1, with one
line saying what to fix (--token, --target).

Progress goes to stderr: on a terminal a live bar per scenario; otherwise
(CI logs, pipes) a line when a scenario starts, one every
--progress-interval (elapsed/total, clients connected, messages sent and
delivered per second, p99 so far, errors by code, checks already violated),
one at once when a check finds its first violation, and one with the
scenario's verdict. --quiet shows none.

Checks that judge as events arrive (total-order, no-gaps, delivery-order,
no-duplicates, resume-complete, status-codes, fairness's honest errors,
game-invariants, and thresholds) report a violation while the run goes on;
--fail-fast ends the scenario at the first one and judges what was seen.

SIGINT (Ctrl-C) or SIGTERM stops the clients, judges what was seen, writes
every requested report marked "interrupted" and exits 1; the scenarios not
yet started are listed as not run. A second signal quits at once.

Exit status: 0 every check passed, 1 a check failed or was not measurable
(never a pass), a scenario could not run (for example an unreachable
target) or the run was interrupted, 2 bad usage or a bad scenario file.
With --shard, a shard's own verdicts cover only its clients and do not set the
exit status: 0 once it ran and wrote its results, 1 if a scenario could not
run or the raw results could not be written.`

// runExample is the examples of newRunCmd's help.
const runExample = `  bidikit run
  bidikit run scenarios/ --report junit=report.xml --report markdown=summary.md
  bidikit run chat.yaml --target 127.0.0.1:7070 --token "$TOKEN" --seed 7
  bidikit run scenarios/chat --set duration=10s --set roles.honest.count=50
  bidikit run chat.yaml --target 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
  bidikit run chat.yaml --report json=- --report html=report.html
  bidikit run chat.yaml --target chat:7070 --shard 2/3 --raw-out shard-2.raw`
