package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// linesWith returns the lines of s that contain sub.
func linesWith(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

var _ = Describe("bidikit run's preflight", func() {
	It("stops a run whose --token the server refuses: exit 1 and one line naming UNAUTHENTICATED and --token", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		tokens := filepath.Join(dir, "tokens.txt")
		Expect(os.WriteFile(tokens, []byte("good-token alice\n"), 0o600)).To(Succeed())
		srv := startServe(ctx, "--tokens", tokens)
		// A scenario far longer than the spec's timeout, twice: only a run
		// that stops before any client starts finishes in time.
		long := strings.Replace(tinyScenario, "duration: 2s", "duration: 5m", 1)
		Expect(long).NotTo(Equal(tinyScenario))
		Expect(os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(long), 0o644)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(strings.Replace(long, "name: tiny", "name: tiny-b", 1)), 0o644)).To(Succeed())

		code, stdout, stderr := runBidikit(ctx, dir, "run", "--target", srv.grpc, "--token", "wrong", "--report", "json", "a.yaml", "b.yaml")
		Expect(code).To(Equal(1), "stdout: %s\nstderr: %s", stdout, stderr)
		// One error line; the console summary (on stderr, as the JSON
		// report took stdout) shows the scenario's row besides, and no log
		// line repeats it.
		var lines []string
		for _, l := range linesWith(stderr, "UNAUTHENTICATED") {
			if strings.HasPrefix(l, "bidikit:") || strings.Contains(l, "level=") {
				lines = append(lines, l)
			}
		}
		Expect(lines).To(HaveLen(1), "stderr:\n%s", stderr)
		Expect(lines[0]).To(And(ContainSubstring("--token"), ContainSubstring(srv.grpc), ContainSubstring("bidikit.chat.v1.ChatService")))

		var run struct {
			Passed    bool `json:"passed"`
			Scenarios []struct {
				Failure string `json:"failure"`
				Clients int    `json:"clients"`
			} `json:"scenarios"`
		}
		Expect(json.Unmarshal([]byte(stdout), &run)).To(Succeed(), stdout)
		Expect(run.Passed).To(BeFalse())
		Expect(run.Scenarios).To(HaveLen(2))
		Expect(run.Scenarios[0].Failure).To(ContainSubstring("UNAUTHENTICATED"))
		Expect(run.Scenarios[0].Clients).To(BeZero())
		Expect(run.Scenarios[1].Failure).To(HavePrefix("not tried: the target already failed "))

		By("the server's own token: the clients run")
		ok := strings.Replace(tinyScenario, "duration: 2s", "duration: 1s", 1)
		Expect(os.WriteFile(filepath.Join(dir, "ok.yaml"), []byte(ok), 0o644)).To(Succeed())
		_, stdout, stderr = runBidikit(ctx, dir, "run", "--target", srv.grpc, "--token", "good-token", "--report", "json", "ok.yaml")
		Expect(stderr).NotTo(ContainSubstring("preflight"))
		var good struct {
			Scenarios []struct {
				Failure  string `json:"failure"`
				Messages struct {
					Acked int64 `json:"acked"`
				} `json:"messages"`
			} `json:"scenarios"`
		}
		Expect(json.Unmarshal([]byte(stdout), &good)).To(Succeed(), stdout)
		Expect(good.Scenarios).To(HaveLen(1))
		Expect(good.Scenarios[0].Failure).To(BeEmpty())
		Expect(good.Scenarios[0].Messages.Acked).To(BeNumerically(">", 0))
	}, SpecTimeout(time.Minute))
})
