package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/bidikit/bidikit/bench"
	"github.com/bidikit/bidikit/bench/generic"
)

func init() { rootCmd.AddCommand(newBenchCmd()) }

// benchFlags are `bidikit bench`'s flags beyond the two configs.
type benchFlags struct {
	jsonOut, htmlOut string
	noEngine         bool
	logLevel         string
}

// newBenchCmd builds `bidikit bench`: a fixed workload against a bidikit
// server, or (--call) any gRPC bidi method through ghz's runner.
func newBenchCmd() *cobra.Command {
	var (
		g  generic.Config
		p  bench.Params
		bf benchFlags
	)
	cmd := &cobra.Command{
		Use:   "bench [WORKLOAD] [flags]",
		Short: "Benchmark a bidikit workload, or any gRPC bidi method (--call), with per-message latency",
		Long: `bench measures throughput and per-message latency.

Workloads (against the reference server started in-process, or --target):
  chat-fanout   members in rooms (--clients, --scopes rooms), each sending at --rate/s;
                deliveries/s and send-to-delivery latency
  chat-echo     each client alone in its room (--clients), sending at --rate/s;
                messages/s and send-to-own-delivery latency
  collab-trace  replays --trace PATH (an editing trace, .json or .json.gz) into one
                document, --window operations in flight; the final text must equal the
                trace's endContent, else exit 1 naming the first difference
  game-ticks    players (--clients) in matches (--scopes) sending inputs at --rate/s;
                tick updates/s and tick-to-delivery latency
  conn-ramp     opens chat streams, --step every --step-every, until an error or
                --clients streams; streams held and memory per stream (with
                --spawn-server the server is a 'bidikit serve' subprocess and its own
                RSS is read from its admin /metrics; in-process it is the Go runtime
                memory of the whole process, clients included)

chat-* are driven through the harness engine (so its overhead is what is
measured; --engine=false uses a bare loop instead); --baseline adds a bare
generated-stub loop on the same workload and prints ours/baseline. The other
workloads use bench's own generated-stub loops.

Generic driver (--call package.Service/Method, flags modelled on ghz's): the
method is described by --proto (+ --import-paths), --protoset, or server
reflection when neither is given. bidikit records per-message latency inside
each stream (one response per request, in order), applies --fault connection
faults through toxiproxy in front of --target, checks channelz for leaks after
the run when the target serves it (a leak exits 1), and with --vs ghz runs
plain ghz in alternating --rounds and prints both with their ratio.

Output: a table on stdout; --json FILE (or - for stdout) and --html FILE.
Exit 0 = done, 1 = a verdict failed (trace mismatch, leak) or the run failed,
2 = bad usage.`,
		Example: `  bidikit bench chat-echo --clients 100 -z 10s --baseline
  bidikit bench chat-fanout --clients 1000 --scopes 10 --rate 1
  bidikit bench collab-trace --trace testdata/traces/automerge-paper.json.gz
  bidikit bench --call grpc.testing.TestService/FullDuplexCall --target 127.0.0.1:50051 --insecure \
      -d '{"response_parameters":[{"size":64}],"payload":{"body":"AAAA"}}' \
      -c 100 --connections 1 --stream-call-count 1000 -z 10s --vs ghz --rounds 3
  bidikit bench compare old.json new1.json new2.json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(bf.logLevel)); err != nil {
				return usagef("--log-level %q: want debug, info, warn or error", bf.logLevel)
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fs := cmd.Flags()
			if g.Call != "" {
				if len(args) > 0 {
					return usagef("--call and a workload (%s) exclude each other", args[0])
				}
				if fs.Changed("duration") {
					g.Duration = p.Duration
				}
				res, err := generic.Run(ctx, g)
				if errors.Is(err, generic.ErrUsage) {
					return usageError{err}
				}
				if err != nil && !errors.Is(err, generic.ErrLeak) {
					return err
				}
				if werr := writeBench(cmd.OutOrStdout(), cmd.ErrOrStderr(), []bench.Result{res}, bf); werr != nil {
					return werr
				}
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "bidikit:", err)
					return errChecksFailed
				}
				return nil
			}
			if len(args) == 0 {
				return usagef("name a workload (chat-fanout, chat-echo, collab-trace, game-ticks, conn-ramp) or give --call package.Service/Method\nSee 'bidikit bench --help'.")
			}
			p.Engine = !bf.noEngine
			p.Log = log
			if err := bench.Check(args[0], p); err != nil {
				return usageError{err}
			}
			if p.Spawn == "self" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				p.Spawn = exe
			}
			res, err := bench.Run(ctx, args[0], p)
			var mismatch *bench.TraceMismatchError
			if err != nil && !errors.As(err, &mismatch) {
				return err
			}
			if werr := writeBench(cmd.OutOrStdout(), cmd.ErrOrStderr(), []bench.Result{res}, bf); werr != nil {
				return werr
			}
			if mismatch != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "bidikit: FAIL:", mismatch)
				return errChecksFailed
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	// Generic driver (ghz's names).
	fs.StringVar(&g.Call, "call", "", "generic driver: the bidi method as package.Service/Method")
	fs.StringVar(&g.Proto, "proto", "", "generic: the .proto file describing --call")
	fs.StringSliceVar(&g.ImportPaths, "import-paths", nil, "generic: import paths for --proto (comma-separated)")
	fs.StringVar(&g.Protoset, "protoset", "", "generic: a compiled protoset file describing --call (default: server reflection)")
	fs.StringVarP(&g.Data, "data", "d", "", "generic: the request message as JSON (ghz templates allowed)")
	fs.StringVarP(&g.Metadata, "metadata", "m", "", "generic: request metadata as a JSON object")
	fs.UintVarP(&g.Concurrency, "concurrency", "c", 50, "generic: concurrent streams")
	fs.UintVar(&g.Connections, "connections", 1, "generic: TCP connections the streams share")
	fs.UintVar(&g.StreamCallCount, "stream-call-count", 0, "generic: messages per stream before it half-closes (0 = until the round ends)")
	fs.DurationVar(&g.StreamInterval, "stream-interval", 0, "generic: pause between a stream's messages")
	fs.BoolVar(&g.Insecure, "insecure", false, "generic: plaintext connection (default TLS, as in ghz)")
	fs.StringVar(&g.CACert, "cacert", "", "generic: PEM file of root certificates for TLS")
	fs.StringVar(&g.Cert, "cert", "", "generic: client certificate PEM file (with --key)")
	fs.StringVar(&g.Key, "key", "", "generic: client key PEM file (with --cert)")
	fs.StringVar(&g.ServerName, "cname", "", "generic: TLS server name override")
	fs.BoolVar(&g.SkipVerify, "skipTLS", false, "generic: skip TLS certificate verification")
	fs.StringArrayVar(&g.Faults, "fault", nil, "generic: connection fault through toxiproxy, repeatable: latency=50ms, bandwidth=100 (KB/s), reset, latency:latency=50ms,jitter=5ms")
	fs.StringVar(&g.Vs, "vs", "", "generic: also run this tool on the same target, alternating rounds (ghz)")
	fs.IntVar(&g.Rounds, "rounds", 1, "generic: rounds per tool")
	fs.DurationVar(&g.DialTimeout, "dial-timeout", 5*time.Second, "how long the target may take to accept a connection")
	// Shared.
	fs.StringVar(&g.Target, "target", "", "server gRPC address host:port (workloads: default the reference server in-process)")
	fs.DurationVarP(&p.Duration, "duration", "z", 10*time.Second, "measured duration (generic: per round; conn-ramp: upper bound)")
	// Workloads.
	fs.IntVar(&p.Clients, "clients", 0, "members / players / stream cap (default per workload: fanout 1000, echo 100, game 5000, ramp 10000)")
	fs.IntVar(&p.Scopes, "scopes", 0, "rooms (chat-fanout, default 10) or matches (game-ticks, default 50)")
	fs.Float64Var(&p.Rate, "rate", 0, "sends per second per client, paced open-loop (default: fanout 1, echo 1000, game 10)")
	fs.IntVar(&p.BodyBytes, "body-bytes", 64, "chat message body size")
	fs.StringVar(&p.Trace, "trace", "", "collab-trace: editing trace file (.json or .json.gz); the repository ships testdata/traces/{automerge-paper,seph-blog1}.json.gz")
	fs.IntVar(&p.Window, "window", 64, "collab-trace: operations in flight")
	fs.IntVar(&p.Step, "step", 500, "conn-ramp: streams opened per step")
	fs.DurationVar(&p.StepEvery, "step-every", 250*time.Millisecond, "conn-ramp: time between steps")
	fs.IntVar(&p.StreamsPerConn, "streams-per-conn", 100, "conn-ramp: streams sharing one TCP connection")
	fs.StringVar(&p.Spawn, "spawn-server", "", "conn-ramp: run the server as a subprocess of this bidikit binary (\"self\" = this one) to read its own RSS")
	fs.StringVar(&p.AdminURL, "admin-url", "", "the target's admin HTTP base URL, to read its RSS (e.g. http://127.0.0.1:7071)")
	fs.BoolVar(&p.Baseline, "baseline", false, "chat-*: also run a bare generated-stub loop and print the ratio")
	fs.BoolVar(&bf.noEngine, "no-engine", false, "chat-*: drive with bench's own loop instead of the harness engine")
	// Output.
	fs.StringVar(&bf.jsonOut, "json", "", "write the result as JSON to FILE (- = stdout, the table then goes to stderr)")
	fs.StringVar(&bf.htmlOut, "html", "", "write an HTML report with charts to FILE")
	fs.StringVar(&bf.logLevel, "log-level", "warn", "log level of harness-side logs on stderr")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		p.Target = g.Target
		g.Duration = p.Duration
		return nil
	}
	cmd.AddCommand(newBenchCompareCmd())
	return cmd
}

// writeBench renders results: the table on stdout (stderr when JSON goes to
// stdout), then the --json and --html files.
func writeBench(stdout, stderr io.Writer, rs []bench.Result, bf benchFlags) error {
	table := stdout
	if bf.jsonOut == "-" {
		table = stderr
	}
	if err := bench.Text(table, rs); err != nil {
		return err
	}
	if bf.jsonOut == "-" {
		if err := bench.JSON(stdout, rs); err != nil {
			return err
		}
	} else if bf.jsonOut != "" {
		if err := writeFileWith(bf.jsonOut, func(w io.Writer) error { return bench.JSON(w, rs) }); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if bf.htmlOut != "" {
		if err := writeFileWith(bf.htmlOut, func(w io.Writer) error { return bench.HTML(w, rs) }); err != nil {
			return fmt.Errorf("--html: %w", err)
		}
	}
	return nil
}

func writeFileWith(path string, fn func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// newBenchCompareCmd builds `bidikit bench compare OLD.json NEW.json...`.
func newBenchCompareCmd() *cobra.Command {
	var threshold float64
	cmd := &cobra.Command{
		Use:   "compare OLD.json NEW.json...",
		Short: "Compare repeated bench runs: medians, min..max, and whether a difference is within noise",
		Long: `compare reads bench JSON results (a file may hold one result or an array of
repeated runs). The first file is the old set; every further file joins the new
set. Per workload and tool it prints each metric's median with its min..max and
count, the change of the medians, and a verdict: "within noise" when the old and
new min..max ranges overlap or the change is under --noise; else better or worse.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if threshold < 0 || threshold >= 1 {
				return usagef("--noise %v: want a fraction in [0,1), e.g. 0.03", threshold)
			}
			old, err := bench.ReadJSON(args[0])
			if err != nil {
				return usageError{err}
			}
			var cur []bench.Result
			for _, a := range args[1:] {
				rs, err := bench.ReadJSON(a)
				if err != nil {
					return usageError{err}
				}
				cur = append(cur, rs...)
			}
			ds := bench.Compare(old, cur, threshold)
			if len(ds) == 0 {
				return usagef("nothing to compare: no workload and tool appear in both %s and the new files", args[0])
			}
			return bench.DeltaText(cmd.OutOrStdout(), ds)
		},
	}
	cmd.Flags().Float64Var(&threshold, "noise", 0.03, "a relative change below this is noise even when the ranges do not overlap")
	return cmd
}
