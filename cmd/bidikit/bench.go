package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/bidikit/bidikit/bench"
	"github.com/bidikit/bidikit/bench/generic"
)

func init() { rootCmd.AddCommand(newBenchCmd()) }

// benchFlags are `bidikit bench`'s flags beyond the two configs.
type benchFlags struct {
	jsonOut, htmlOut string
	// output and format are ghz's -o and -O (for --call they may come from
	// a ghz config too).
	output, format string
	noEngine       bool
	logLevel       string
}

// newBenchCmd builds `bidikit bench`: a fixed workload against a bidikit
// server, or (--call) any gRPC bidi method through ghz's runner.
func newBenchCmd() *cobra.Command {
	b := &benchCmd{}
	cmd := &cobra.Command{
		Use:     "bench [WORKLOAD] [flags]",
		Short:   "Benchmark a bidikit workload, or any gRPC bidi method (--call), with per-message latency",
		Long:    benchLong,
		Example: benchExample,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 && args[1] == "self" && b.spawn {
				return usagef("--spawn-server is a switch now (it runs this binary's 'bidikit serve'): drop %q", args[1])
			}
			if len(args) > 1 {
				return usagef("one workload at a time, got %d (%s)", len(args), strings.Join(args, ", "))
			}
			return nil
		},
		RunE: b.run,
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	// Generic driver (ghz's names).
	fs.StringVar(&b.g.Call, "call", "", "generic driver: the bidi method as package.Service/Method")
	fs.StringVar(&b.config, "config", "", "generic: read ghz's JSON config FILE (ghz's field names; flags given here win over it)")
	fs.StringVar(&b.g.Proto, "proto", "", "generic: the .proto file describing --call (compiled at run time, no protoc)")
	fs.StringSliceVarP(&b.g.ImportPaths, "import-paths", "i", nil, "generic: import paths for --proto (comma-separated)")
	fs.StringVar(&b.g.Protoset, "protoset", "", "generic: a compiled protoset file describing --call (default: server reflection)")
	fs.StringVarP(&b.g.Data, "data", "d", "", "generic: the request message as JSON, or an array of messages each call sends in turn (ghz templates allowed)")
	fs.StringVarP(&b.g.DataFile, "data-file", "D", "", "generic: read --data from FILE")
	fs.BoolVar(&b.g.StreamDynamicMessages, "stream-dynamic-messages", false, "generic: run the --data template for every message, not once per call")
	fs.StringVarP(&b.g.Metadata, "metadata", "m", "", "generic: request metadata as a JSON object")
	fs.StringVarP(&b.g.MetadataFile, "metadata-file", "M", "", "generic: read --metadata from FILE")
	fs.UintVarP(&b.g.Concurrency, "concurrency", "c", 50, "generic: concurrent streams")
	fs.UintVar(&b.g.Connections, "connections", 1, "generic: TCP connections the streams share")
	fs.UintVarP(&b.g.Total, "total", "n", 0, "generic: calls per round (ghz's requests), each sending --stream-call-count messages; excludes -z")
	fs.DurationVarP(&b.g.MaxDuration, "max-duration", "x", 0, "generic: end an -n round after this long even if calls are left")
	fs.UintVar(&b.g.StreamCallCount, "stream-call-count", 0, "generic: messages per call before it half-closes (0 = until the round ends)")
	fs.DurationVar(&b.g.StreamInterval, "stream-interval", 0, "generic: pause after each message a stream sends (ghz's pacing; not with --rate or --window)")
	// Connection: bidikit's vocabulary; ghz's spellings through ghzAliases.
	fs.SetNormalizeFunc(benchAliases)
	b.conn.registerTLS(fs)
	b.conn.registerToken(fs, "generic: bearer token, sent as \"authorization: Bearer T\" metadata")
	fs.StringArrayVar(&b.g.Faults, "fault", nil, "generic: connection fault through toxiproxy, repeatable: latency=50ms, bandwidth=100 (KB/s), reset, latency:latency=50ms,jitter=5ms")
	fs.StringVar(&b.g.Vs, "vs", "", "generic: also run this tool on the same target, alternating rounds (ghz); saturating runs with --stream-call-count N only; conn-ramp: plain-grpc, alternating rounds against a plain grpc-go chat server with grpc-go's defaults (with --spawn-server)")
	fs.IntVar(&b.g.Rounds, "rounds", 1, "generic and conn-ramp --vs: rounds per tool")
	fs.DurationVar(&b.g.DialTimeout, "dial-timeout", 5*time.Second, "how long the target may take to accept a connection (ghz: --connect-timeout)")
	fs.DurationVar(&b.g.DrainTimeout, "drain-timeout", 10*time.Second, "generic: how long a round waits for calls in flight once it stops sending, before cancelling them")
	fs.StringVar(&b.g.Name, "name", "", "generic: a name for the run, kept in the result's params")
	fs.StringVar(&b.tags, "tags", "", "generic: labels as a JSON object of strings, kept in the result's params")
	// Shared.
	fs.StringVar(&b.g.Target, "target", "", "server gRPC address host:port (workloads: default the reference server in-process)")
	fs.DurationVarP(&b.p.Duration, "duration", "z", 10*time.Second, "measured duration (generic: per round; conn-ramp: upper bound)")
	// Workloads.
	fs.IntVar(&b.p.Clients, "clients", 0, "members / players / stream cap (default per workload: fanout 1000, echo 100, game 5000, ramp 10000)")
	fs.IntVar(&b.p.Scopes, "scopes", 0, "rooms (chat-fanout, default 10) or matches (game-ticks, default 50)")
	fs.Float64Var(&b.p.Rate, "rate", 0, "sends per second per client, paced open-loop (default: fanout 1, echo 1000, game 10; --call: paced mode, per stream)")
	fs.IntVar(&b.p.BodyBytes, "body-bytes", 64, "chat message body size")
	fs.StringVar(&b.p.Trace, "trace", "", "collab-trace: editing trace file (.json or .json.gz); the repository ships testdata/traces/{automerge-paper,seph-blog1}.json.gz")
	fs.IntVar(&b.p.Window, "window", 64, "collab-trace: operations in flight; --call: windowed mode, at most this many messages in flight per stream")
	fs.IntVar(&b.p.Step, "step", 500, "conn-ramp: streams opened per step")
	fs.DurationVar(&b.p.StepEvery, "step-every", 250*time.Millisecond, "conn-ramp: time between steps")
	fs.IntVar(&b.p.StreamsPerConn, "streams-per-conn", 0, "streams sharing one TCP connection (default: chat-echo, chat-fanout, game-ticks 1; conn-ramp 100)")
	fs.BoolVar(&b.spawn, "spawn-server", false, "conn-ramp: run the server as a 'bidikit serve' subprocess of this binary, to read its own RSS")
	fs.DurationVar(&b.p.Hold, "hold", 0, "conn-ramp: hold the streams this long after the ramp before reading the server's memory (time to take a heap or goroutine profile from its admin /debug/pprof/)")
	fs.StringVar(&b.p.AdminURL, "admin-url", "", "the target's admin HTTP base URL, to read its RSS (e.g. http://127.0.0.1:7071)")
	fs.BoolVar(&b.p.Baseline, "baseline", false, "chat-*: also run a bare generated-stub loop and print the ratio")
	fs.BoolVar(&b.bf.noEngine, "no-engine", false, "chat-*: drive with bench's own loop instead of the harness engine")
	// Output.
	fs.StringVar(&b.bf.jsonOut, "json", "", "write the result as JSON to FILE (- = stdout, the table then goes to stderr)")
	fs.StringVar(&b.bf.htmlOut, "html", "", "write an HTML report with charts to FILE")
	fs.StringVarP(&b.bf.output, "output", "o", "", "write the --format output to FILE instead of stdout (ghz's -o)")
	fs.StringVarP(&b.bf.format, "format", "O", "", "output format (ghz's -O): summary (the table, default), json, pretty (json too) or html")
	fs.StringVar(&b.bf.logLevel, "log-level", "warn", "log level of harness-side logs on stderr")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		b.p.Target = b.g.Target
		return nil
	}
	cmd.AddCommand(newBenchCompareCmd())
	return cmd
}

// benchCmd is `bidikit bench`'s flags.
type benchCmd struct {
	g      generic.Config
	p      bench.Params
	bf     benchFlags
	conn   connFlags
	spawn  bool
	config string // --config: a ghz JSON config
	tags   string // --tags: a JSON object
}

// run runs a workload, or the generic driver with --call.
func (b *benchCmd) run(cmd *cobra.Command, args []string) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(b.bf.logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", b.bf.logLevel)
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := b.conn.validate(); err != nil {
		return err
	}
	if err := checkFormat(b.bf.format); err != nil {
		return err
	}
	if b.g.Call != "" || b.config != "" {
		return b.runCall(ctx, cmd, args)
	}
	if len(args) == 0 {
		return usagef("name a workload (chat-fanout, chat-echo, collab-trace, game-ticks, conn-ramp), 'compare', or give --call package.Service/Method\nSee 'bidikit bench --help'.")
	}
	if b.conn.wantTLS() || b.conn.token != "" {
		return usagef("bench %s dials in plaintext with each client's own dev token: --tls*, --token and ghz's TLS flags apply to --call", args[0])
	}
	b.p.Engine = !b.bf.noEngine
	b.p.Log = log
	if args[0] == bench.ConnRamp {
		b.p.Vs, b.p.Rounds = b.g.Vs, b.g.Rounds
	} else if b.g.Vs != "" {
		return usagef("--vs applies to --call (ghz) and conn-ramp (plain-grpc); %s compares with --baseline", args[0])
	}
	if err := bench.Check(args[0], b.p); err != nil {
		hint := "" // a suggestion only for a workload name that is not one
		if !slices.Contains(benchWorkloads(), args[0]) {
			hint = didYouMean(args[0], append(benchWorkloads(), "compare"))
		}
		return usageError{fmt.Errorf("%w%s", err, hint)}
	}
	if b.spawn {
		if args[0] != bench.ConnRamp {
			return usagef("--spawn-server applies to conn-ramp (its server's own memory); %s runs the reference server in-process or uses --target", args[0])
		}
		if b.g.Target != "" {
			return usagef("--spawn-server and --target exclude each other: the spawned server is the target")
		}
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		b.p.Spawn = exe
	} else if b.p.Vs != "" {
		return usagef("conn-ramp --vs %s needs --spawn-server: each server runs in its own process, so its RSS is its own", b.p.Vs)
	}
	res, err := bench.Run(ctx, args[0], b.p)
	var mismatch *bench.TraceMismatchError
	if err != nil && !errors.As(err, &mismatch) {
		return err
	}
	if werr := writeBench(cmd.OutOrStdout(), cmd.ErrOrStderr(), []bench.Result{res}, b.bf); werr != nil {
		return werr
	}
	if mismatch != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "bidikit: FAIL:", mismatch)
		return errChecksFailed
	}
	return nil
}

// writeBench renders results: the table on stdout, then the -O format
// (ghz's) on stdout or to -o FILE, then the --json and --html files. When
// a machine format (-O json, --json -) goes to stdout, the table goes to
// stderr.
func writeBench(stdout, stderr io.Writer, rs []bench.Result, bf benchFlags) error {
	machine := bf.format != "" && bf.format != "summary"
	table := stdout
	if bf.jsonOut == "-" || (machine && bf.output == "") {
		table = stderr
	}
	if err := bench.Text(table, rs); err != nil {
		return err
	}
	if machine || bf.output != "" {
		render := formats[bf.format]
		if bf.output == "" {
			if err := render(stdout, rs); err != nil {
				return err
			}
		} else if err := writeFileWith(bf.output, func(w io.Writer) error { return render(w, rs) }); err != nil {
			return fmt.Errorf("-o: %w", err)
		}
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

// formats are the -O formats: ghz's names for bench's renderers.
var formats = map[string]func(io.Writer, []bench.Result) error{
	"":        bench.Text,
	"summary": bench.Text,
	"json":    bench.JSON,
	"pretty":  bench.JSON,
	"html":    bench.HTML,
}

// checkFormat refuses an -O format bench cannot write, naming those it can.
func checkFormat(f string) error {
	if _, ok := formats[f]; ok {
		return nil
	}
	switch f {
	case "csv", "influx-summary", "influx-details", "prometheus":
		return usagef("-O %s: ghz's %s output is not supported; bench writes summary, json (pretty is the same indented JSON) and html", f, f)
	}
	return usagef("-O %q: want summary, json, pretty or html%s", f, didYouMean(f, []string{"summary", "json", "pretty", "html"}))
}

// benchAliases reads ghz's flag spellings as bench's: the TLS ones
// (ghzAliases) and --connect-timeout.
func benchAliases(fs *pflag.FlagSet, name string) pflag.NormalizedName {
	if name == "connect-timeout" {
		return "dial-timeout"
	}
	return ghzAliases(fs, name)
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

// newBenchCompareCmd builds `bidikit bench compare OLD... -- NEW...`.
func newBenchCompareCmd() *cobra.Command {
	var o bench.CompareOptions
	cmd := &cobra.Command{
		Use:   "compare OLD.json... -- NEW.json...",
		Short: "Compare repeated bench runs with a significance test: better, worse, or no significant difference",
		Long: `compare reads bench JSON results (--json FILE; a file may hold one result
or an array of repeated runs): the files before -- are the old runs, those
after it the new ones. Without --, the first file is the old set and the
others the new.

Per workload and tool it prints each metric's median with its min..max and
number of runs, the change of the medians, and a verdict from a significance
test of golang.org/x/perf/benchmath over the runs of each side:

  better / worse (p=...)               the difference is significant (p < --alpha)
  no significant difference (p=...)    it is not: noise cannot be ruled out
  negligible: +1.2% (p=...)            significant, but under --noise
  cannot judge: 1 vs 3 runs            a side has fewer than 3 runs

--test t (default) is Welch's t-test, which can judge from 3 runs per side;
--test u is the Mann-Whitney U-test benchstat uses, which assumes nothing
about the distribution but needs 4 runs per side at --alpha 0.05 (with 3,
its smallest possible p is 0.1). Run each side at least 3 times (5 or more
is better), alternating old and new on the same machine.`,
		Example: `  for i in 1 2 3; do
    bidikit bench chat-echo -z 10s --json old-$i.json   # on the old build
  done
  ...                                                    # then new-$i.json on the new one
  bidikit bench compare old-*.json -- new-*.json`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Noise < 0 || o.Noise >= 1 {
				return usagef("--noise %v: want a fraction in [0,1), e.g. 0.03", o.Noise)
			}
			if o.Alpha <= 0 || o.Alpha >= 1 {
				return usagef("--alpha %v: want a level in (0,1), e.g. 0.05", o.Alpha)
			}
			if o.Test != bench.TTest && o.Test != bench.UTest {
				return usagef("--test %q: want t (Welch's t-test) or u (Mann-Whitney U-test)", o.Test)
			}
			oldFiles, newFiles := args[:1], args[1:]
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				oldFiles, newFiles = args[:dash], args[dash:]
			}
			if len(oldFiles) == 0 || len(newFiles) == 0 {
				return usagef("give the old runs' files before -- and the new runs' files after it")
			}
			read := func(files []string) ([]bench.Result, error) {
				var out []bench.Result
				for _, a := range files {
					rs, err := bench.ReadJSON(a)
					if err != nil {
						return nil, usageError{err}
					}
					out = append(out, rs...)
				}
				return out, nil
			}
			old, err := read(oldFiles)
			if err != nil {
				return err
			}
			cur, err := read(newFiles)
			if err != nil {
				return err
			}
			ds := bench.Compare(old, cur, o)
			if len(ds) == 0 {
				return usagef("nothing to compare: no workload and tool appear in both the old files (%s) and the new ones", strings.Join(oldFiles, ", "))
			}
			return bench.DeltaText(cmd.OutOrStdout(), ds)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Test, "test", bench.TTest, "significance test: t (Welch's t-test) or u (Mann-Whitney U-test, benchstat's)")
	fl.Float64Var(&o.Alpha, "alpha", 0.05, "significance level: a p-value below it is a significant difference")
	fl.Float64Var(&o.Noise, "noise", 0.03, "a significant change of the medians smaller than this fraction is reported as negligible")
	return cmd
}

// benchLong is the long help of newBenchCmd.
const benchLong = `bench measures throughput and per-message latency.

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
                memory of the whole process, clients included); --hold keeps the
                streams open before the reading (profile the server meanwhile);
                --vs plain-grpc --rounds N alternates N rounds of the reference
                and of a plain grpc-go chat server with grpc-go's defaults (one
                goroutine per stream, Joined for Join, nothing else), each a
                fresh subprocess, and prints both per-member figures and the ratio

chat-* are driven through the harness engine (so its overhead is what is
measured; --no-engine uses a bare loop instead); --baseline adds a bare
generated-stub loop on the same workload and prints ours/baseline. The other
workloads use bench's own generated-stub loops. Workloads dial --target in
plaintext, each client with its own dev token (what 'bidikit serve' without
--tokens accepts): the --tls* flags and --token apply to --call.

Generic driver (--call package.Service/Method, ghz's flags): any gRPC bidi
method, described by --proto (+ --import-paths, compiled at run time),
--protoset, or server reflection when neither is given. --data is a JSON
message or an array of messages each call sends in turn (-D FILE reads it;
ghz's templates such as {{.RequestNumber}} run per call, per message with
--stream-dynamic-messages). -c streams share --connections connections; each
stream makes calls one after another, each call sending --stream-call-count
messages (0 = until the round ends). A round lasts -z, or makes -n calls
(ghz's requests: n x stream-call-count messages; -x bounds it). --config FILE
reads ghz's JSON config (ghz's field names; flags given here win; an unknown
field, or one of ghz's bidikit does not support, is an error naming the
file, line and field).

Latency is per message, each response paired in order with its request (an
echo such as FullDuplexCall), in one of three modes:
  saturating (default)  streams send without waiting: a throughput figure; the
                        latency is the stream's own send backlog, and says so
  --rate R              paced open loop, R messages/s per stream; latency from
                        each message's scheduled send time, so a stalled server
                        shows in every message it held back (coordinated
                        omission corrected); timer lateness of the driver is
                        reported apart (timer_late_*), not counted
  --window W            at most W messages in flight per stream (closed loop;
                        W 1 is ping-pong)
--fault applies connection faults through toxiproxy in front of --target;
after the run channelz is checked for leaks when the target serves it (a
leak exits 1). --vs ghz runs ghz (v0.120.0's runner) on the same target,
method, data and concurrency in alternating --rounds and prints both with
the ratio of messages/s; it is refused when the work would differ: paced or
windowed runs, --stream-call-count 0 (bidikit's streams run the whole round,
ghz's calls send their data once) and -x.

` + connHelp + `

Unlike ghz, whose default is TLS, --call dials in plaintext unless a --tls*
flag is given. ghz's spellings are accepted too: --cacert (--tls-ca), --cert
(--tls-cert), --key (--tls-key), --cname (--tls-server-name), --skipTLS
(--tls-skip-verify), --insecure. --token T is sent as "authorization: Bearer
T" metadata. A --call method the server does not have is answered with the
service's methods (or the services) its reflection lists.

Output: a table on stdout; -O json|pretty|html (ghz's -O; summary is the
table) to stdout or -o FILE (the table then goes to stderr when the format
takes stdout); --json FILE (or - for stdout) and --html FILE.
Exit 0 = done, 1 = a verdict failed (trace mismatch, leak) or the run failed,
2 = bad usage.`

// benchExample is the examples of newBenchCmd's help.
const benchExample = `  bidikit bench chat-echo --clients 100 -z 10s --baseline
  bidikit bench chat-fanout --clients 1000 --scopes 10 --rate 1
  bidikit bench collab-trace --trace testdata/traces/automerge-paper.json.gz
  bidikit bench conn-ramp --spawn-server --clients 4000
  bidikit bench conn-ramp --spawn-server --clients 10000 --streams-per-conn 1 --vs plain-grpc --rounds 3
  bidikit bench --call grpc.testing.TestService/FullDuplexCall --target 127.0.0.1:50051 \
      -d '{"response_parameters":[{"size":64}],"payload":{"body":"AAAA"}}' \
      -c 100 --connections 1 --stream-call-count 1000 -z 10s --vs ghz --rounds 4
  bidikit bench --call grpc.testing.TestService/FullDuplexCall --target 127.0.0.1:50051 \
      -D req.json -c 100 --rate 100 -z 10s -O json -o paced.json
  bidikit bench --config ghz.json -n 1000 --stream-call-count 10
  bidikit bench compare old1.json old2.json old3.json -- new1.json new2.json new3.json`
