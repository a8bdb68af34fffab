package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/bench"
)

// benchTraceFile writes a tiny editing trace turning "" into "hi there"
// whose endContent claims end.
func benchTraceFile(dir, end string) string {
	b, err := json.Marshal(map[string]any{"startContent": "", "endContent": end,
		"txns": []any{map[string]any{"patches": []any{[]any{0, 0, "hi"}, []any{2, 0, " there"}}}}})
	Expect(err).NotTo(HaveOccurred())
	p := filepath.Join(dir, "trace.json")
	Expect(os.WriteFile(p, b, 0o600)).To(Succeed())
	return p
}

var _ = Describe("bidikit bench", func() {
	var dir string
	BeforeEach(func() { dir = GinkgoT().TempDir() })

	DescribeTable("exits 2 on bad usage, naming what is wrong",
		func(ctx SpecContext, args []string, msg string) {
			code, _, stderr := runBidikit(ctx, dir, append([]string{"bench"}, args...)...)
			Expect(code).To(Equal(2), "stderr: %s", stderr)
			Expect(stderr).To(ContainSubstring(msg))
			if len(args) > 0 && args[0] == "conn-ramp" {
				Expect(stderr).NotTo(ContainSubstring("did you mean"), "a known workload gets no spelling suggestion")
			}
		},
		Entry("no workload and no --call", []string{}, "name a workload", SpecTimeout(time.Minute)),
		Entry("an unknown workload", []string{"chat-flood"}, `unknown workload "chat-flood"`, SpecTimeout(time.Minute)),
		Entry("collab-trace without --trace", []string{"collab-trace"}, "--trace", SpecTimeout(time.Minute)),
		Entry("a bad --call", []string{"--call", "TestService", "--target", "127.0.0.1:1", "--insecure"}, `--call "TestService": want package.Service/Method`, SpecTimeout(time.Minute)),
		Entry("a missing --proto file", []string{"--call", "grpc.testing.TestService/FullDuplexCall", "--proto", "nope.proto", "--target", "127.0.0.1:1", "--insecure"}, `--proto "nope.proto": no such file`, SpecTimeout(time.Minute)),
		Entry("--call with a workload", []string{"chat-echo", "--call", "a.B/C"}, "exclude each other", SpecTimeout(time.Minute)),
		Entry("--call without --target", []string{"--call", "a.B/C", "--insecure"}, "--target is required", SpecTimeout(time.Minute)),
		Entry("a stream-level --fault", []string{"--call", "a.B/C", "--target", "127.0.0.1:1", "--insecure", "--fault", "cancel"}, "connection faults only", SpecTimeout(time.Minute)),
		Entry("--vs ghz with unbounded streams", []string{"--call", "a.B/C", "--target", "127.0.0.1:1", "--vs", "ghz"},
			"--vs ghz refused: with --stream-call-count 0 each bidikit stream sends until the round ends, while each ghz call sends its data's messages once", SpecTimeout(time.Minute)),
		Entry("--vs ghz in paced mode", []string{"--call", "a.B/C", "--target", "127.0.0.1:1", "--vs", "ghz", "--stream-call-count", "10", "--rate", "100"},
			"--vs ghz refused: ghz has only the saturating mode", SpecTimeout(time.Minute)),
		Entry("--rate with --window", []string{"--call", "a.B/C", "--target", "127.0.0.1:1", "--rate", "100", "--window", "4"}, "exclude each other: pick one mode", SpecTimeout(time.Minute)),
		Entry("-n with -z", []string{"--call", "a.B/C", "--target", "127.0.0.1:1", "-n", "10", "-z", "1s", "--stream-call-count", "5"}, "-n (10 calls) and -z (1s) exclude each other", SpecTimeout(time.Minute)),
		Entry("an -O ghz has and bench has not", []string{"--call", "a.B/C", "--target", "127.0.0.1:1", "-O", "csv"}, "-O csv: ghz's csv output is not supported", SpecTimeout(time.Minute)),
		Entry("a missing -D file", []string{"--call", "a.B/C", "--target", "127.0.0.1:1", "-D", "nope.json"}, `--data-file "nope.json"`, SpecTimeout(time.Minute)),
		Entry("a missing --config", []string{"--config", "nope.json"}, "nope.json", SpecTimeout(time.Minute)),
		Entry("conn-ramp --vs plain-grpc without --spawn-server", []string{"conn-ramp", "--vs", "plain-grpc"}, "conn-ramp --vs plain-grpc needs --spawn-server", SpecTimeout(time.Minute)),
		Entry("conn-ramp --vs another comparator", []string{"conn-ramp", "--spawn-server", "--vs", "ghz"}, `--vs "ghz": conn-ramp takes --vs plain-grpc`, SpecTimeout(time.Minute)),
		Entry("--vs on a chat workload", []string{"chat-echo", "--vs", "plain-grpc"}, "--vs applies to --call (ghz) and conn-ramp", SpecTimeout(time.Minute)),
		Entry("a negative --hold", []string{"--hold", "-1s", "conn-ramp"}, "--hold is -1s, want >= 0", SpecTimeout(time.Minute)),
		Entry("compare with one file", []string{"compare", "a.json"}, "requires at least 2 arg", SpecTimeout(time.Minute)),
		Entry("compare with a missing file", []string{"compare", "a.json", "b.json"}, "a.json", SpecTimeout(time.Minute)),
	)

	It("conn-ramp --vs plain-grpc alternates the reference and the plain grpc-go server, each in its own process", func(ctx SpecContext) {
		out := filepath.Join(dir, "ramp.json")
		code, stdout, stderr := runBidikit(ctx, dir, "bench", "conn-ramp", "--spawn-server", "--clients", "30", "--step", "15",
			"--step-every", "10ms", "--streams-per-conn", "1", "--vs", "plain-grpc", "--rounds", "2", "--json", out)
		Expect(code).To(Equal(0), "stdout: %s\nstderr: %s", stdout, stderr)
		rs, err := bench.ReadJSON(out)
		Expect(err).NotTo(HaveOccurred())
		Expect(rs).To(HaveLen(1))
		r := rs[0]
		Expect(r.Params).To(HaveKeyWithValue("vs", "plain-grpc"))
		Expect(r.Extra).To(HaveKeyWithValue("streams_held", 30.0))
		Expect(r.Extra["bytes_per_stream"]).NotTo(BeZero())
		Expect(r.Extra["vs_bytes_per_stream"]).NotTo(BeZero())
		Expect(r.Extra["ratio_to_vs"]).To(BeNumerically("~", r.Extra["bytes_per_stream"]/r.Extra["vs_bytes_per_stream"], 1e-9))
		// The plain server runs one goroutine per stream, the reference more.
		Expect(r.Extra["vs_goroutines_per_stream"]).To(BeNumerically(">", 0))
		Expect(r.Extra["goroutines_per_stream"]).To(BeNumerically(">", r.Extra["vs_goroutines_per_stream"]))
		Expect(r.Notes).To(ContainElement(HavePrefix("round 2: reference ")))
		Expect(stdout).To(ContainSubstring("per idle member, median of 2 alternating rounds"))
	}, SpecTimeout(2*time.Minute))

	It("names the file, line, column and field of a ghz config it cannot read", func(ctx SpecContext) {
		cfg := filepath.Join(dir, "ghz.json")
		Expect(os.WriteFile(cfg, []byte("{\n  \"call\": \"a.B/C\",\n  \"concurrancy\": 5\n}"), 0o600)).To(Succeed())
		code, _, stderr := runBidikit(ctx, dir, "bench", "--config", cfg)
		Expect(code).To(Equal(2), "stderr: %s", stderr)
		Expect(stderr).To(ContainSubstring(cfg + `:3:3: unknown field "concurrancy"; did you mean "concurrency"?`))

		Expect(os.WriteFile(cfg, []byte(`{"call": "a.B/C", "load-schedule": "step"}`), 0o600)).To(Succeed())
		code, _, stderr = runBidikit(ctx, dir, "bench", "--config", cfg)
		Expect(code).To(Equal(2), "stderr: %s", stderr)
		Expect(stderr).To(ContainSubstring(cfg + `:1:19: field "load-schedule" is not supported by bidikit bench`))
	}, SpecTimeout(time.Minute))

	Describe("--call against grpc-go's interop TestService", func() {
		var addr string
		BeforeEach(func() { addr = startTestService(nil) })
		const echo = `{"response_parameters":[{"size":16}],"payload":{"body":"AAAAAAAAAAAAAAAAAAAAAA=="}}`

		It("runs a ghz config's -n calls and writes -O json to -o, flags winning over the file", func(ctx SpecContext) {
			cfg := filepath.Join(dir, "ghz.json")
			Expect(os.WriteFile(cfg, []byte(`{"call": "grpc.testing.TestService/FullDuplexCall", "host": "`+addr+`",
  "insecure": true, "total": 6, "concurrency": 3, "stream-call-count": 4, "data": `+echo+`, "format": "summary"}`), 0o600)).To(Succeed())
			out := filepath.Join(dir, "out.json")
			code, stdout, stderr := runBidikit(ctx, dir, "bench", "--config", cfg, "-c", "2", "-O", "json", "-o", out)
			Expect(code).To(Equal(0), "stdout: %s\nstderr: %s", stdout, stderr)
			Expect(stdout).To(ContainSubstring("bidikit-saturating")) // the table, on the console
			b, err := os.ReadFile(out)
			Expect(err).NotTo(HaveOccurred())
			var res bench.Result
			Expect(json.Unmarshal(b, &res)).To(Succeed())
			Expect(res.Params).To(HaveKeyWithValue("mode", "saturating"))
			Expect(res.Params).To(HaveKeyWithValue("concurrency", "2"))
			Expect(res.Messages).To(Equal(int64(24))) // -n 6 calls x 4 messages
			Expect(res.LatencyMS.Count).To(Equal(int64(24)))
			Expect(res.LatencyOf).To(HavePrefix("SATURATING"))
		}, SpecTimeout(time.Minute))

		It("paces with --rate and puts -O json on stdout, the table on stderr", func(ctx SpecContext) {
			code, stdout, stderr := runBidikit(ctx, dir, "bench", "--call", "grpc.testing.TestService/FullDuplexCall", "--target", addr,
				"-d", echo, "-c", "2", "--rate", "50", "-z", "500ms", "-O", "json")
			Expect(code).To(Equal(0), "stderr: %s", stderr)
			Expect(stderr).To(ContainSubstring("bidikit-paced"))
			var res bench.Result
			Expect(json.Unmarshal([]byte(stdout), &res)).To(Succeed())
			Expect(res.Tool).To(Equal("bidikit-paced"))
			Expect(res.Params).To(HaveKeyWithValue("rate_per_stream", "50"))
			Expect(res.Messages).To(BeNumerically(">", 0))
		}, SpecTimeout(time.Minute))

		It("runs --window, and --vs ghz with a ratio that is not 0", func(ctx SpecContext) {
			code, stdout, stderr := runBidikit(ctx, dir, "bench", "--call", "grpc.testing.TestService/FullDuplexCall", "--target", addr,
				"-d", echo, "-c", "2", "--window", "1", "-z", "300ms")
			Expect(code).To(Equal(0), "stderr: %s", stderr)
			Expect(stdout).To(ContainSubstring("bidikit-windowed"))
			Expect(stdout).To(ContainSubstring("at most 1 in flight"))

			res := filepath.Join(dir, "vs.json")
			code, stdout, stderr = runBidikit(ctx, dir, "bench", "--call", "grpc.testing.TestService/FullDuplexCall", "--target", addr,
				"-d", echo, "-c", "2", "-n", "10", "--stream-call-count", "5", "--vs", "ghz", "--rounds", "2", "--json", res)
			Expect(code).To(Equal(0), "stderr: %s", stderr)
			Expect(stdout).To(MatchRegexp(`bidikit-saturating / ghz messages/s = \d+\.\d\d over 2 alternating rounds`))
			var r bench.Result
			b, err := os.ReadFile(res)
			Expect(err).NotTo(HaveOccurred())
			Expect(json.Unmarshal(b, &r)).To(Succeed())
			Expect(r.Vs.Ratio).To(BeNumerically(">", 0))
			Expect(r.Messages).To(Equal(r.Vs.Messages)) // the same work: 2 rounds x 10 calls x 5
			Expect(r.Messages).To(Equal(int64(100)))
		}, SpecTimeout(time.Minute))
	})

	It("fails within seconds with a clear message when the --call target is unreachable", func(ctx SpecContext) {
		code, _, stderr := runBidikit(ctx, dir, "bench", "--call", "grpc.testing.TestService/FullDuplexCall",
			"--target", "127.0.0.1:1", "--insecure", "--dial-timeout", "1s")
		Expect(code).To(Equal(1))
		Expect(stderr).To(ContainSubstring("target 127.0.0.1:1 unreachable"))
	}, SpecTimeout(30*time.Second))

	It("exits 1 and says where the text differs when a trace's endContent is wrong", func(ctx SpecContext) {
		code, stdout, stderr := runBidikit(ctx, dir, "bench", "collab-trace", "--trace", benchTraceFile(dir, "hi thEre"))
		Expect(code).To(Equal(1), "stdout: %s\nstderr: %s", stdout, stderr)
		Expect(stderr).To(ContainSubstring("FAIL"))
		Expect(stderr).To(ContainSubstring("at code point 5"))
		Expect(stdout).To(ContainSubstring("collab-trace"))
	}, SpecTimeout(60*time.Second))

	It("passes a correct trace", func(ctx SpecContext) {
		code, stdout, stderr := runBidikit(ctx, dir, "bench", "collab-trace", "--trace", benchTraceFile(dir, "hi there"))
		Expect(code).To(Equal(0), "stderr: %s", stderr)
		Expect(stdout).To(ContainSubstring("equals the trace's endContent"))
	}, SpecTimeout(60*time.Second))

	It("writes JSON and HTML for a short chat-echo run, and compares runs", func(ctx SpecContext) {
		out := filepath.Join(dir, "echo.json")
		html := filepath.Join(dir, "echo.html")
		code, stdout, stderr := runBidikit(ctx, dir, "bench", "chat-echo", "--clients", "2", "--rate", "50", "-z", "1s", "--json", out, "--html", html)
		Expect(code).To(Equal(0), "stderr: %s", stderr)
		Expect(stdout).To(ContainSubstring("chat-echo"))
		b, err := os.ReadFile(out)
		Expect(err).NotTo(HaveOccurred())
		var m map[string]any
		Expect(json.Unmarshal(b, &m)).To(Succeed())
		for _, k := range []string{"workload", "params", "duration_s", "messages_per_sec", "latency_ms", "server_rss_bytes"} {
			Expect(m).To(HaveKey(k))
		}
		Expect(m["messages_per_sec"]).To(BeNumerically(">", 0))
		h, err := os.ReadFile(html)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(h)).To(ContainSubstring("<svg"))

		code, stdout, stderr = runBidikit(ctx, dir, "bench", "compare", out, out)
		Expect(code).To(Equal(0), "stderr: %s", stderr)
		Expect(stdout).To(ContainSubstring("cannot judge: 1 vs 1 runs"))
	}, SpecTimeout(60*time.Second))
})
