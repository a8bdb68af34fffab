package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// runBidikit runs the built binary in dir and returns its exit code and
// output.
func runBidikit(ctx SpecContext, dir string, args ...string) (int, string, string) {
	return runBidikitEnv(ctx, dir, nil, args...)
}

// runBidikitEnv is runBidikit with extra environment variables.
func runBidikitEnv(ctx SpecContext, dir string, env []string, args ...string) (int, string, string) {
	cmd := exec.CommandContext(ctx, bidikitBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer // exec copies into them; Run waits for the copies
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		Expect(err).NotTo(HaveOccurred())
	}
	return code, out.String(), errOut.String()
}

const tinyScenario = `# Two chatters in one room for two seconds.
name: tiny
service: chat
duration: 2s
settle: 0s
roles:
  - name: chatter
    count: 2
    behaviour: chatter
    rate: 5/s
checks:
  - total-order
  # grace under the 2s run, so some membership is held to what was acked
  - no-lost-acks: { grace: 300ms }
`

var _ = Describe("bidikit run", func() {
	var dir string
	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(tinyScenario), 0o644)).To(Succeed())
	})

	DescribeTable("exits 2 on bad usage",
		func(ctx SpecContext, args []string, msg string) {
			code, _, stderr := runBidikit(ctx, dir, append([]string{"run"}, args...)...)
			Expect(code).To(Equal(2))
			Expect(stderr).To(ContainSubstring(msg))
		},
		Entry("an unknown flag", []string{"--no-such-flag"}, "unknown flag", SpecTimeout(time.Minute)),
		Entry("a missing scenario file", []string{"missing.yaml"}, "missing.yaml", SpecTimeout(time.Minute)),
		Entry("an unknown report format", []string{"--report", "pdf"}, `--report "pdf"`, SpecTimeout(time.Minute)),
		Entry("--out without --report", []string{"--out", "x.json"}, "--out", SpecTimeout(time.Minute)),
		Entry("an empty element in a --target list", []string{"--target", "127.0.0.1:1,,127.0.0.1:2"}, `--target: element 2 of "127.0.0.1:1,,127.0.0.1:2" is empty`, SpecTimeout(time.Minute)),
		Entry("a --run-id with a space", []string{"--run-id", "a b"}, `--run-id: run id "a b": want 1-32 characters`, SpecTimeout(time.Minute)),
		Entry("a --target without a port", []string{"--target", "127.0.0.1"}, `--target: "127.0.0.1": missing port`, SpecTimeout(time.Minute)),
		Entry("a --set naming no role", []string{"tiny.yaml", "--set", "roles.nosuch.count=5"}, `--set roles.nosuch.count=5: no role "nosuch" (roles: chatter)`, SpecTimeout(time.Minute)),
		Entry("a --set value the file's checks refuse", []string{"tiny.yaml", "--set", "duration=soon"}, `--set duration=soon: duration: "soon" is not a duration`, SpecTimeout(time.Minute)),
		Entry("a --set without =", []string{"tiny.yaml", "--set", "duration"}, `--set duration: want KEY=VALUE`, SpecTimeout(time.Minute)),
		Entry("a --set of an unknown field", []string{"tiny.yaml", "--set", "durration=1s"}, `did you mean "duration"?`, SpecTimeout(time.Minute)),
	)

	It("applies --set to every scenario before it runs", func(ctx SpecContext) {
		Expect(os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(tinyScenario), 0o644)).To(Succeed())
		code, stdout, stderr := runBidikit(ctx, dir, "run", "tiny.yaml", "--set", "duration=1s", "--set", "roles.chatter.count=3", "--set", "seed=5", "--report", "json=-", "--quiet")
		Expect(code).To(Equal(0), "stdout: %s\nstderr: %s", stdout, stderr)
		var run struct {
			Scenarios []struct {
				Clients int   `json:"clients"`
				Seed    int64 `json:"seed"`
			} `json:"scenarios"`
		}
		Expect(json.Unmarshal([]byte(stdout), &run)).To(Succeed(), stdout)
		Expect(run.Scenarios).To(HaveLen(1))
		Expect(run.Scenarios[0].Clients).To(Equal(3))
		Expect(run.Scenarios[0].Seed).To(BeEquivalentTo(5))
	}, SpecTimeout(time.Minute))

	It("exits 2 on a bad scenario file, naming file and line", func(ctx SpecContext) {
		Expect(os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("name: bad\nservice: chat\nduration: 2s\nroles:\n  - name: a\n    cuont: 1\n    behaviour: chatter\nchecks: []\n"), 0o644)).To(Succeed())
		code, _, stderr := runBidikit(ctx, dir, "run", "bad.yaml")
		Expect(code).To(Equal(2))
		Expect(stderr).To(ContainSubstring("bad.yaml:6"))
	}, SpecTimeout(time.Minute))

	It("fails within seconds with a clear message when the target is unreachable", func(ctx SpecContext) {
		Expect(os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(tinyScenario), 0o644)).To(Succeed())
		code, _, stderr := runBidikit(ctx, dir, "run", "--target", "127.0.0.1:1", "--dial-timeout", "2s", "tiny.yaml")
		Expect(code).To(Equal(1))
		Expect(stderr).To(ContainSubstring("127.0.0.1:1"))
		Expect(stderr).To(ContainSubstring("unreachable"))
	}, SpecTimeout(30*time.Second))

	It("runs a scenario against the in-process reference server and writes the JSON report", func(ctx SpecContext) {
		Expect(os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(tinyScenario), 0o644)).To(Succeed())
		code, stdout, stderr := runBidikit(ctx, dir, "run", "--seed", "7", "--report", "json", "--out", "r.json", "--report", "text", "tiny.yaml")
		Expect(code).To(Equal(0), "stdout: %s\nstderr: %s", stdout, stderr)
		Expect(stdout).To(ContainSubstring("total-order"))
		data, err := os.ReadFile(filepath.Join(dir, "r.json"))
		Expect(err).NotTo(HaveOccurred())
		var run struct {
			Passed    bool  `json:"passed"`
			Seed      int64 `json:"seed"`
			Scenarios []struct {
				Name     string `json:"name"`
				Seed     int64  `json:"seed"`
				Messages struct {
					Sent int64 `json:"sent"`
				} `json:"messages"`
			} `json:"scenarios"`
		}
		Expect(json.Unmarshal(data, &run)).To(Succeed())
		Expect(run.Passed).To(BeTrue())
		Expect(run.Seed).To(BeEquivalentTo(7))
		Expect(run.Scenarios).To(HaveLen(1))
		Expect(run.Scenarios[0].Seed).To(BeEquivalentTo(7))
		Expect(run.Scenarios[0].Messages.Sent).To(BeNumerically(">", 0))
	}, SpecTimeout(time.Minute))
})
