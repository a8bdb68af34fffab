package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
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
		},
		Entry("no workload and no --call", []string{}, "name a workload", SpecTimeout(time.Minute)),
		Entry("an unknown workload", []string{"chat-flood"}, `unknown workload "chat-flood"`, SpecTimeout(time.Minute)),
		Entry("collab-trace without --trace", []string{"collab-trace"}, "--trace", SpecTimeout(time.Minute)),
		Entry("a bad --call", []string{"--call", "TestService", "--target", "127.0.0.1:1", "--insecure"}, `--call "TestService": want package.Service/Method`, SpecTimeout(time.Minute)),
		Entry("a missing --proto file", []string{"--call", "grpc.testing.TestService/FullDuplexCall", "--proto", "nope.proto", "--target", "127.0.0.1:1", "--insecure"}, `--proto "nope.proto": no such file`, SpecTimeout(time.Minute)),
		Entry("--call with a workload", []string{"chat-echo", "--call", "a.B/C"}, "exclude each other", SpecTimeout(time.Minute)),
		Entry("--call without --target", []string{"--call", "a.B/C", "--insecure"}, "--target is required", SpecTimeout(time.Minute)),
		Entry("a stream-level --fault", []string{"--call", "a.B/C", "--target", "127.0.0.1:1", "--insecure", "--fault", "cancel"}, "connection faults only", SpecTimeout(time.Minute)),
		Entry("compare with one file", []string{"compare", "a.json"}, "requires at least 2 arg", SpecTimeout(time.Minute)),
		Entry("compare with a missing file", []string{"compare", "a.json", "b.json"}, "a.json", SpecTimeout(time.Minute)),
	)

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
