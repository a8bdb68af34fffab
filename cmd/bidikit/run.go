package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/report"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/harness/spawn"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/scenarios"
)

func init() { rootCmd.AddCommand(newRunCmd()) }

// runFlags are `bidikit run`'s flags.
type runFlags struct {
	target        string
	insecure      bool
	tlsCA         string
	tlsCert       string
	tlsKey        string
	tlsServerName string
	token         string
	seed          int64
	reports       []string
	outs          []string
	adminURL      string
	spawnServer   bool
	quiet         bool
	dialTimeout   time.Duration
}

// newRunCmd builds `bidikit run`: load scenarios, find or start the target,
// run each scenario through the engine, render the reports, and map the
// outcome to the exit code.
func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [files or folders of scenarios...]",
		Short: "Run scenario files against a server and report verdicts",
		Long: `run loads scenario files (YAML; folders are searched recursively) and runs
each one: virtual clients with real gRPC streams, the scenario's faults, then
its checks. With no arguments it runs the smoke suite (scenarios/smoke, or the
copy built into the binary).

Without --target the reference server is started in-process on loopback, so
the command works on a fresh clone. With --spawn-server it is started as a
'bidikit serve' subprocess instead, which server faults (kill-server) need.

Reports: --report text|json|junit|html, repeatable; the n-th --out FILE takes
the n-th report, reports without an --out go to stdout. Default: text to
stdout.

Exit status: 0 every check passed, 1 a check failed or a scenario could not
run (for example an unreachable target), 2 bad usage or a bad scenario file.`,
		Example: `  bidikit run
  bidikit run scenarios/ --report junit --out report.xml
  bidikit run chat.yaml --target 127.0.0.1:7070 --token "$TOKEN" --seed 7
  bidikit run chat.yaml --report text --report html --out - --out report.html`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScenarios(cmd, args, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.target, "target", "", "gRPC address (host:port) of the server under test; empty starts the reference server in-process")
	fl.BoolVar(&f.insecure, "insecure", false, "dial without TLS (the default unless a --tls-* flag is given)")
	fl.StringVar(&f.tlsCA, "tls-ca", "", "PEM file of CA certificates to verify the server with (enables TLS)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "PEM client certificate for mutual TLS (with --tls-key)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "PEM client key for mutual TLS (with --tls-cert)")
	fl.StringVar(&f.tlsServerName, "tls-server-name", "", "server name to verify the certificate against (enables TLS)")
	fl.StringVar(&f.token, "token", "", "bearer token every client presents (default: each client's own user id, which dev-auth servers accept)")
	fl.Int64Var(&f.seed, "seed", 0, "override every scenario's seed")
	fl.StringArrayVar(&f.reports, "report", nil, "report format: text, json, junit or html (repeatable)")
	fl.StringArrayVar(&f.outs, "out", nil, "file for the matching --report (repeatable; \"-\" is stdout)")
	fl.StringVar(&f.adminURL, "admin-url", "", "the target's admin HTTP base URL (http://host:port) for leak checks")
	fl.BoolVar(&f.spawnServer, "spawn-server", false, "start 'bidikit serve' as a subprocess (memory-less: SQLite in a temp dir) so server faults can kill and restart it")
	fl.BoolVar(&f.quiet, "quiet", false, "no progress line and no server logs")
	fl.DurationVar(&f.dialTimeout, "dial-timeout", 5*time.Second, "how long to wait for the target to answer before giving up")
	return cmd
}

// output is one report destination.
type output struct {
	format string
	path   string // "" or "-" = stdout
}

func (f *runFlags) outputs() ([]output, error) {
	if len(f.outs) > len(f.reports) {
		return nil, usagef("%d --out given for %d --report: each --out needs a --report before it", len(f.outs), len(f.reports))
	}
	known := map[string]bool{}
	for _, k := range report.Formats() {
		known[k] = true
	}
	var out []output
	stdout := 0
	for i, r := range f.reports {
		if !known[r] {
			return nil, usagef("--report %q: unknown format (known: %s)", r, strings.Join(report.Formats(), ", "))
		}
		o := output{format: r}
		if i < len(f.outs) {
			o.path = f.outs[i]
		}
		if o.path == "" || o.path == "-" {
			stdout++
		}
		out = append(out, o)
	}
	if stdout > 1 {
		return nil, usagef("%d reports would go to stdout; give each but one an --out FILE", stdout)
	}
	if len(out) == 0 {
		out = []output{{format: "text"}}
	}
	return out, nil
}

func (f *runFlags) engineOptions() ([]engine.Option, error) {
	tlsWanted := f.tlsCA != "" || f.tlsCert != "" || f.tlsKey != "" || f.tlsServerName != ""
	if tlsWanted && f.insecure {
		return nil, usagef("--insecure and --tls-* exclude each other")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	if f.dialTimeout <= 0 {
		return nil, usagef("--dial-timeout %v must be positive", f.dialTimeout)
	}
	opts := []engine.Option{engine.WithDialTimeout(f.dialTimeout)}
	if f.token != "" {
		opts = append(opts, engine.WithToken(f.token))
	}
	if !tlsWanted {
		return append(opts, engine.WithInsecure()), nil
	}
	cfg := &tls.Config{ServerName: f.tlsServerName, MinVersion: tls.VersionTLS12}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, usagef("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--tls-ca %s: no PEM certificate in it", f.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, usagef("--tls-cert/--tls-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return append(opts, engine.WithTLS(cfg)), nil
}

// loadScenarios reads args, or the smoke suite when there are none: from
// ./scenarios/smoke when it exists, else the copy embedded in the binary.
func loadScenarios(args []string) ([]*scenario.Scenario, error) {
	if len(args) > 0 {
		return scenario.Load(args...)
	}
	dir := filepath.Join("scenarios", scenarios.SmokeDir)
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return scenario.Load(dir)
	}
	entries, err := fs.ReadDir(scenarios.Smoke, scenarios.SmokeDir)
	if err != nil {
		return nil, err
	}
	var out []*scenario.Scenario
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		name := path.Join(scenarios.SmokeDir, e.Name())
		data, err := fs.ReadFile(scenarios.Smoke, name)
		if err != nil {
			return nil, err
		}
		s, err := scenario.Parse("(built-in) "+name, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

func runScenarios(cmd *cobra.Command, args []string, f *runFlags) error {
	outs, err := f.outputs()
	if err != nil {
		return err
	}
	opts, err := f.engineOptions()
	if err != nil {
		return err
	}
	if f.spawnServer && f.target != "" {
		return usagef("--spawn-server and --target exclude each other: the spawned server is the target")
	}
	scs, err := loadScenarios(args)
	if err != nil {
		return usageError{err}
	}
	if len(scs) == 0 {
		return usagef("no scenarios to run")
	}
	if cmd.Flags().Changed("seed") {
		for _, s := range scs {
			s.Seed = f.seed
		}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logW := cmd.ErrOrStderr()
	if f.quiet {
		logW = io.Discard
	}
	log := slog.New(slog.NewTextHandler(logW, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts = append(opts, engine.WithLogger(log))

	target, adminURL := f.target, f.adminURL
	switch {
	case f.spawnServer:
		dir, err := os.MkdirTemp("", "bidikit-spawn-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		srv, err := spawn.Start(ctx, spawn.Options{DB: filepath.Join(dir, "bidikit.db")})
		if err != nil {
			return fmt.Errorf("--spawn-server: %w", err)
		}
		defer srv.Stop()
		target = srv.Addr()
		if adminURL == "" {
			adminURL = "http://" + srv.AdminAddr()
		}
		opts = append(opts, engine.WithFaultEnv(srv))
	case target == "":
		sctx, cancel := context.WithCancel(context.Background())
		// Only the in-process server's errors: its dev-auth and memory
		// storage warnings are what `run` without --target means.
		srvLog := slog.New(slog.NewTextHandler(logW, &slog.HandlerOptions{Level: slog.LevelError}))
		srv, err := reference.StartDefault(sctx, srvLog)
		if err != nil {
			cancel()
			return fmt.Errorf("starting the in-process reference server: %w", err)
		}
		defer func() {
			cancel()
			_ = srv.Wait()
		}()
		target = srv.Addr()
		if adminURL == "" && srv.AdminAddr() != "" {
			adminURL = "http://" + srv.AdminAddr()
		}
	}
	opts = append(opts, engine.WithTarget(target), engine.WithServerEnv(adminURL))

	run := &result.Run{Passed: true, Seed: scs[0].Seed, Target: target, StartedAt: time.Now().UTC()}
	if cmd.Flags().Changed("seed") {
		run.Seed = f.seed
	}
	live := !f.quiet && isTerminal(cmd.OutOrStdout())
	var fatal error
	for _, s := range scs {
		var res result.Scenario
		if fatal != nil {
			res = result.Scenario{Name: s.Name, File: s.File, Service: s.Service, Seed: s.Seed, Errors: map[string]int{},
				Failure: "not run: " + fatal.Error()}
		} else {
			res, err = runOne(ctx, cmd.ErrOrStderr(), s, opts, live)
			if err != nil && (errors.Is(err, engine.ErrUnreachable) || ctx.Err() != nil) {
				fatal = err
			}
		}
		if !res.Passed {
			run.Passed = false
		}
		run.Scenarios = append(run.Scenarios, res)
	}
	if err := writeReports(cmd.OutOrStdout(), outs, run); err != nil {
		return err
	}
	if fatal != nil {
		return fatal
	}
	if !run.Passed {
		return errChecksFailed
	}
	return nil
}

// runOne runs one scenario, with a live progress line on a terminal.
func runOne(ctx context.Context, w io.Writer, s *scenario.Scenario, opts []engine.Option, live bool) (result.Scenario, error) {
	if !live {
		return engine.Run(ctx, s, opts...)
	}
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(30))
	total := s.Duration.Milliseconds()
	var mu sync.Mutex
	var last engine.Progress
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(s.Name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			mu.Lock()
			defer mu.Unlock()
			return fmt.Sprintf("%d/%d connected  %.0f msg/s  %d errors", last.Connected, last.Clients, last.MessagesPerSec, last.Errors)
		})))
	res, err := engine.Run(ctx, s, append(opts, engine.WithProgress(func(pr engine.Progress) {
		mu.Lock()
		last = pr
		mu.Unlock()
		bar.SetCurrent(min(pr.Elapsed.Milliseconds(), total))
	}, 0))...)
	if err != nil {
		bar.Abort(false)
	} else {
		bar.SetCurrent(total)
	}
	p.Wait()
	return res, err
}

// writeReports renders run once per output.
func writeReports(stdout io.Writer, outs []output, run *result.Run) error {
	for _, o := range outs {
		if o.path == "" || o.path == "-" {
			if err := report.Write(stdout, o.format, run); err != nil {
				return fmt.Errorf("writing the %s report: %w", o.format, err)
			}
			continue
		}
		file, err := os.Create(o.path)
		if err != nil {
			return fmt.Errorf("--out %s: %w", o.path, err)
		}
		werr := report.Write(file, o.format, run)
		cerr := file.Close()
		if err := errors.Join(werr, cerr); err != nil {
			return fmt.Errorf("writing the %s report to %s: %w", o.format, o.path, err)
		}
	}
	return nil
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
