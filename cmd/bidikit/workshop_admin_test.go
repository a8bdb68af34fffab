package main

import (
	"bufio"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("bidikit workshop check without --admin-url", func() {
	It("is never GREEN for the leaking exercise server: leaks is not measurable, exit 1", func(ctx SpecContext) {
		serve := exec.CommandContext(ctx, bidikitBin, "workshop", "serve", "1", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
		stdout, err := serve.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		serve.Stderr = GinkgoWriter
		Expect(serve.Start()).To(Succeed())
		DeferCleanup(func() { _ = serve.Process.Kill(); _ = serve.Wait() })
		line, err := bufio.NewReader(stdout).ReadString('\n')
		Expect(err).NotTo(HaveOccurred())
		m := workshopServeLine.FindStringSubmatch(strings.TrimSpace(line))
		Expect(m).NotTo(BeNil(), "start line %q", line)

		cache := GinkgoT().TempDir()
		code, out := workshopRun(ctx, ".", []string{"XDG_CACHE_HOME=" + cache, "HOME=" + cache}, "workshop", "check", "1", "--target", m[2])
		Expect(code).To(Equal(exitFailed), out)
		Expect(out).To(ContainSubstring("? leaks"))
		Expect(out).To(ContainSubstring("not measurable"))
		Expect(out).To(ContainSubstring("--admin-url"))
		Expect(out).NotTo(ContainSubstring("GREEN"))
	}, SpecTimeout(2*time.Minute))
})
