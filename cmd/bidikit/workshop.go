package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/workshop"
)

func init() { rootCmd.AddCommand(newWorkshopCmd()) }

// newWorkshopCmd builds `bidikit workshop` and its subcommands: list, serve,
// init and check. Everything they need is embedded in package workshop.
func newWorkshopCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "workshop",
		Short: "Workshop exercises: broken servers, their sheets and suites",
		Long: `workshop is the teaching track. Each exercise is a small broken server
that speaks the bidikit protos, a sheet (English and Japanese) and a
scenario suite that fails against it until the student fixes it.

  bidikit workshop list              the exercises
  bidikit workshop serve 1           run exercise 1's broken server
  bidikit workshop init 1 ./ex01     a Go module to fix it in
  bidikit workshop check 1 ...       run the suite, explain what failed`,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newWorkshopListCmd(), newWorkshopServeCmd(), newWorkshopInitCmd(), newWorkshopCheckCmd())
	subcommandsOnly(cmd)
	return cmd
}

// exerciseArg parses an exercise number argument; errors are usage errors.
func exerciseArg(arg string) (workshop.Exercise, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(strings.ToLower(arg), "ex"))
	if err != nil {
		return workshop.Exercise{}, usagef("exercise %q is not a number: give 1..%d (bidikit workshop list)", arg, len(workshop.All()))
	}
	ex, err := workshop.Get(n)
	if err != nil {
		return workshop.Exercise{}, usageError{err}
	}
	return ex, nil
}

func newWorkshopListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the exercises, one line each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, ex := range workshop.All() {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", ex.Number, ex.Service, ex.Title, ex.Summary)
			}
			return tw.Flush()
		},
	}
}

func newWorkshopServeCmd() *cobra.Command {
	var addr, adminAddr string
	cmd := &cobra.Command{
		Use:   "serve N",
		Short: "Run exercise N's broken server on loopback",
		Long: `serve runs exercise N's broken server: gRPC on --addr (with health,
reflection and channelz) and an admin HTTP server on --admin-addr with
/debug/pprof/ and /healthz, so the leaks check can measure it. It prints
one line for scripts:
  bidikit workshop serve: exercise N listening grpc=HOST:PORT admin=http://HOST:PORT
and serves until SIGINT or SIGTERM.`,
		Example: `  bidikit workshop serve 1
  bidikit workshop check 1 --target 127.0.0.1:7070 --admin-url http://127.0.0.1:7071`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ex, err := exerciseArg(args[0])
			if err != nil {
				return err
			}
			srv, err := workshop.Start(ex, addr, adminAddr)
			if err != nil {
				return err
			}
			defer srv.Stop()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fmt.Fprintf(cmd.OutOrStdout(), "bidikit workshop serve: exercise %d listening grpc=%s admin=%s\n", ex.Number, srv.Addr, srv.AdminURL)
			fmt.Fprintf(cmd.ErrOrStderr(), "Exercise %d: %s (%s service). Check it with:\n  bidikit workshop check %d --target %s --admin-url %s\n",
				ex.Number, ex.Title, ex.Service, ex.Number, srv.Addr, srv.AdminURL)
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:7070", "gRPC listen address (port 0 picks a free one)")
	cmd.Flags().StringVar(&adminAddr, "admin-addr", "127.0.0.1:7071", "admin HTTP listen address for /debug/pprof/ (keep it on loopback)")
	return cmd
}

func newWorkshopInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init N DIR",
		Short: "Write a Go module with exercise N's broken server for a student to fix",
		Long: `init writes a starter Go module into DIR (which must not exist or be
empty): the broken server as editable code, main.go serving it (--addr,
--admin-addr), go.mod (module example.com/bidikit-exNN), a Makefile (run,
check), the sheets and the suite.

The module requires github.com/bidikit/bidikit for the protos. As bidikit is
not published, go.mod gets "replace github.com/bidikit/bidikit => ROOT" with
the bidikit checkout found above the current directory or the bidikit
binary; without one the README says how to add it.`,
		Example: `  bidikit workshop init 1 ~/ex01 && cd ~/ex01 && make run`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ex, err := exerciseArg(args[0])
			if err != nil {
				return err
			}
			dir, err := filepath.Abs(args[1])
			if err != nil {
				return usageError{err}
			}
			root := workshop.FindModuleRoot(".")
			bin, _ := os.Executable()
			if root == "" && bin != "" {
				root = workshop.FindModuleRoot(filepath.Dir(bin))
			}
			opts := workshop.InitOptions{Root: root, Bidikit: "bidikit"}
			if bin != "" {
				opts.Bidikit = bin
			}
			if err := workshop.Init(ex, dir, opts); err != nil {
				return usageError{err}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Exercise %d (%s) written to %s\n", ex.Number, ex.Title, dir)
			if root != "" {
				fmt.Fprintf(out, "go.mod uses your bidikit checkout: replace %s => %s\n", workshop.ModulePath, root)
			} else {
				fmt.Fprintf(out, "No bidikit checkout found: add a replace directive to go.mod (see README.md)\n")
			}
			fmt.Fprintf(out, "Next: cd %s && make run   (then, in another terminal: make check)\n", dir)
			return nil
		},
	}
}

func newWorkshopCheckCmd() *cobra.Command {
	var target, adminURL, lang string
	var reference bool
	var hint int
	var conn connFlags
	cmd := &cobra.Command{
		Use:   "check N",
		Short: "Run exercise N's suite and explain what failed",
		Long: `check runs exercise N's scenario suite through the harness against
--target (a student's server; give --admin-url so the leaks check can count
its goroutines), or, without --target, against the broken server started
in-process. --reference runs it against the reference server instead, to
show what green looks like.

Each failed check is explained with its evidence and a hint from the sheet;
the hints get stronger on every red run (--hint N picks one). Exit status:
0 green, 1 red (or the suite could not run), 2 bad usage.

` + connHelp + ` They apply to --target only.`,
		Example: `  bidikit workshop check 1
  bidikit workshop check 1 --target 127.0.0.1:7070 --admin-url http://127.0.0.1:7071
  bidikit workshop check 4 --reference`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ex, err := exerciseArg(args[0])
			if err != nil {
				return err
			}
			if lang != "en" && lang != "ja" {
				return usagef("--lang %q: want en or ja", lang)
			}
			if reference && target != "" {
				return usagef("--reference runs the reference server in-process: leave out --target")
			}
			if hint < 0 {
				return usagef("--hint %d: want 1 or more (0 = the next one)", hint)
			}
			tlsCfg, err := conn.tlsConfig()
			if err != nil {
				return err
			}
			if target == "" && (conn.wantTLS() || conn.token != "" || conn.insecure) {
				return usagef("--insecure, --tls* and --token are for --target: the server check starts itself speaks plaintext with dev tokens")
			}
			var connOpts []engine.Option
			if target != "" {
				if tlsCfg != nil {
					connOpts = append(connOpts, engine.WithTLS(tlsCfg))
				}
				if conn.token != "" {
					connOpts = append(connOpts, engine.WithToken(conn.token))
				}
			}
			errw := cmd.ErrOrStderr()
			against := "the broken server (in-process)"
			switch {
			case target != "":
				against = target
			case reference:
				against = "the reference server (in-process)"
			}
			fmt.Fprintf(errw, "Running exercise %d's suite against %s (%s)...\n", ex.Number, against, suiteLength(ex))
			out, err := workshop.Check(cmd.Context(), ex, workshop.CheckOptions{
				Target: target, AdminURL: adminURL, Reference: reference, Conn: connOpts,
				Log: slog.New(slog.NewTextHandler(errw, &slog.HandlerOptions{Level: slog.LevelError})),
			})
			if err != nil {
				return err
			}
			if target != "" {
				explainOutcome(cmd.Context(), &out, target, tlsCfg != nil)
			}
			level := hint
			if level == 0 && !out.Green() && !reference {
				level = nextHintLevel(ex.Number)
			}
			if err := workshop.Explain(cmd.OutOrStdout(), ex, out, lang, level); err != nil {
				return err
			}
			if !out.Green() {
				return errChecksFailed
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&target, "target", "", "the student's server, host:port (default: start the broken server in-process)")
	fs.StringVar(&adminURL, "admin-url", "", "the target's admin HTTP base URL with /debug/pprof/, e.g. http://127.0.0.1:7071 (for the leaks check)")
	conn.registerTLS(fs)
	conn.registerToken(fs, "bearer token every client presents to --target (default: each client's own user id, which dev-auth servers accept)")
	fs.BoolVar(&reference, "reference", false, "run the suite against the reference server in-process (shows green)")
	fs.StringVar(&lang, "lang", "en", "language of the hints: en or ja")
	fs.IntVar(&hint, "hint", 0, "show hint N (default: the next one, one stronger per red run)")
	return cmd
}

// suiteLength says roughly how long a suite runs.
func suiteLength(ex workshop.Exercise) string {
	scs, err := ex.Scenarios()
	if err != nil {
		return "unknown length"
	}
	var d time.Duration
	for _, s := range scs {
		d += s.Duration + s.Settle + 5*time.Second
	}
	return "about " + d.Round(time.Second).String()
}

// nextHintLevel counts red runs of exercise n in the user's cache folder
// and returns the new count: hint 1 on the first red run, 2 on the next, ...
// Without a cache folder it returns 1.
func nextHintLevel(n int) int {
	dir, err := os.UserCacheDir()
	if err != nil {
		return 1
	}
	p := filepath.Join(dir, "bidikit", fmt.Sprintf("workshop-ex%02d-red-runs", n))
	level := 1
	if b, err := os.ReadFile(p); err == nil {
		if k, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && k >= 0 {
			level = k + 1
		}
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
		_ = os.WriteFile(p, []byte(strconv.Itoa(level)+"\n"), 0o644)
	}
	return level
}

// explainOutcome adds to a scenario that could not reach target what a
// TLS/plaintext mismatch explains, with the flag to change (asked once).
func explainOutcome(ctx context.Context, out *workshop.Outcome, target string, usedTLS bool) {
	var m mismatch
	asked := false
	for i := range out.Scenarios {
		f := out.Scenarios[i].Failure
		if f == "" || !strings.Contains(f, "unreachable") {
			continue
		}
		if !asked {
			m, asked = diagnose(ctx, errors.New(f), []string{target}, usedTLS), true
		}
		if m != noMismatch {
			out.Scenarios[i].Failure = f + "; " + m.Fix()
		}
	}
}
