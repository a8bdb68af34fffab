package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/bidikit/bidikit/workshop"
)

// workshopRun runs bidikit with args in dir with env added, returning the
// exit code and the combined output.
func workshopRun(ctx context.Context, dir string, env []string, args ...string) (int, string) {
	cmd := exec.CommandContext(ctx, bidikitBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	Expect(err).NotTo(HaveOccurred())
	return 0, string(out)
}

var workshopServeLine = regexp.MustCompile(`^bidikit workshop serve: exercise (\d+) listening grpc=(\S+) admin=(\S+)$`)

var _ = Describe("bidikit workshop", func() {
	It("lists every exercise on one line", func(ctx SpecContext) {
		code, out := exitCodeOf(ctx, "workshop", "list")
		Expect(code).To(Equal(exitOK), out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		Expect(lines).To(HaveLen(len(workshop.All())))
		Expect(lines[0]).To(MatchRegexp(`^1\s+chat\s+The chat server that never forgets`))
		for i, ex := range workshop.All() {
			Expect(lines[i]).To(MatchRegexp(`^%d\s+%s\s+%s\s+%s$`, ex.Number, ex.Service, regexp.QuoteMeta(ex.Title), regexp.QuoteMeta(ex.Summary)))
		}
	}, SpecTimeout(30*time.Second))

	DescribeTable("refuses bad usage with exit status 2",
		func(ctx SpecContext, want string, args ...string) {
			code, out := exitCodeOf(ctx, args...)
			Expect(code).To(Equal(exitUsage), out)
			Expect(out).To(ContainSubstring(want))
		},
		Entry("an unknown exercise", "no exercise 42", "workshop", "check", "42"),
		Entry("a non-number", "is not a number", "workshop", "serve", "chat"),
		Entry("--reference with --target", "leave out --target", "workshop", "check", "1", "--reference", "--target", "127.0.0.1:1"),
		Entry("an unknown language", "want en or ja", "workshop", "check", "1", "--lang", "fr"),
	)

	It("serves a broken server with health, prints its addresses and stops on SIGTERM", func(ctx SpecContext) {
		cmd := exec.CommandContext(ctx, bidikitBin, "workshop", "serve", "5", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
		stdout, err := cmd.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		cmd.Stderr = GinkgoWriter
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		line, err := bufio.NewReader(stdout).ReadString('\n')
		Expect(err).NotTo(HaveOccurred())
		m := workshopServeLine.FindStringSubmatch(strings.TrimSpace(line))
		Expect(m).NotTo(BeNil(), "start line %q", line)
		Expect(m[1]).To(Equal("5"))
		Expect(m[3]).To(HavePrefix("http://127.0.0.1:"))

		cc, err := grpc.NewClient(m[2], grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		defer cc.Close()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.Status).To(Equal(healthpb.HealthCheckResponse_SERVING))

		Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
		Expect(cmd.Wait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("inits a student module that builds, and refuses a non-empty folder", func(ctx SpecContext) {
		root := workshop.FindModuleRoot(".")
		Expect(root).NotTo(BeEmpty())
		dir := filepath.Join(GinkgoT().TempDir(), "ex04")
		code, out := workshopRun(ctx, ".", nil, "workshop", "init", "4", dir)
		Expect(code).To(Equal(exitOK), out)
		Expect(out).To(ContainSubstring("replace github.com/bidikit/bidikit => " + root))
		gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(gomod)).To(ContainSubstring("module example.com/bidikit-ex04"))
		Expect(filepath.Join(dir, "blockingbroadcast", "server.go")).To(BeAnExistingFile())
		mk, _ := os.ReadFile(filepath.Join(dir, "Makefile"))
		Expect(string(mk)).To(ContainSubstring("workshop check 4 --target"))

		build := exec.CommandContext(ctx, "go", "build", "./...")
		build.Dir = dir
		build.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		b, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "go build: %s", b)

		code, out = workshopRun(ctx, ".", nil, "workshop", "init", "4", dir)
		Expect(code).To(Equal(exitUsage), out)
		Expect(out).To(ContainSubstring("not empty"))
	}, SpecTimeout(2*time.Minute))

	It("check exits 1 with the evidence and a hint against the broken server", func(ctx SpecContext) {
		cache := GinkgoT().TempDir()
		code, out := workshopRun(ctx, ".", []string{"XDG_CACHE_HOME=" + cache, "HOME=" + cache}, "workshop", "check", "3")
		Expect(code).To(Equal(exitFailed), out)
		Expect(out).To(ContainSubstring("✗ convergence"))
		Expect(out).To(ContainSubstring("Evidence: replica of"))
		Expect(out).To(ContainSubstring("Hint 1 of"))
		Expect(out).To(ContainSubstring("RED: 1 check(s) failed: convergence"))
	}, SpecTimeout(2*time.Minute))

	It("check 6 blames delivery-order alone, with the member, both seqs and both times, and hints in Japanese", func(ctx SpecContext) {
		ex, err := workshop.Get(6)
		Expect(err).NotTo(HaveOccurred())
		cache := GinkgoT().TempDir()
		code, out := workshopRun(ctx, ".", []string{"XDG_CACHE_HOME=" + cache, "HOME=" + cache}, "workshop", "check", "6", "--lang", "ja")
		Expect(code).To(Equal(exitFailed), out)
		Expect(out).To(MatchRegexp(`✗ delivery-order +\d+ deliveries arrived after a higher seq`))
		Expect(out).To(MatchRegexp(`Evidence: #\d+ \S+ \((chatters|lurkers)\) received seq \d+ at \S+ after seq \d+ at \S+\n`))
		for _, c := range []string{"total-order", "no-gaps", "no-duplicates", "no-lost-acks"} {
			Expect(out).To(ContainSubstring("✓ "+c), out)
		}
		hints := ex.Hints("ja")
		Expect(hints).NotTo(BeEmpty())
		Expect(out).To(ContainSubstring(fmt.Sprintf("Hint 1 of %d: %s", len(hints), hints[0])))
		Expect(out).To(ContainSubstring("RED: 1 check(s) failed: delivery-order\n"))
	}, SpecTimeout(2*time.Minute))

	It("check --reference exits 0 and says GREEN", func(ctx SpecContext) {
		code, out := workshopRun(ctx, ".", nil, "workshop", "check", "3", "--reference")
		Expect(code).To(Equal(exitOK), out)
		Expect(out).To(ContainSubstring("✓ convergence"))
		Expect(out).To(ContainSubstring("GREEN"))
	}, SpecTimeout(2*time.Minute))
})
