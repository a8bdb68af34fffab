package spawn_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
)

func TestSpawn(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "spawn")
}

// binaries built once per suite run (process 1 builds, every parallel
// process uses them).
var (
	binDir    string
	fakeBin   string // testdata/fakeserve: mimics `bidikit serve`
	realBin   string // ./cmd/bidikit
	realBuild string // why realBin could not be built, or ""
	realServe bool   // realBin has a `serve` subcommand with the expected flags
)

var _ = SynchronizedBeforeSuite(func() []byte {
	dir, err := os.MkdirTemp("", "bidikit-spawn-test-")
	Expect(err).NotTo(HaveOccurred())
	root := moduleRoot()
	build := func(out, pkg string) string {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return "go build " + pkg + ": " + err.Error() + "\n" + string(b)
		}
		return ""
	}
	Expect(build("fakeserve", "./harness/spawn/testdata/fakeserve")).To(BeEmpty())
	why := build("bidikit", "./cmd/bidikit")
	return []byte(dir + "\n" + why)
}, func(data []byte) {
	dir, why, _ := strings.Cut(string(data), "\n")
	binDir, realBuild = dir, why
	fakeBin = filepath.Join(dir, "fakeserve")
	realBin = filepath.Join(dir, "bidikit")
	if realBuild == "" {
		// cobra prints the root's help for an unknown subcommand with
		// --help, so look for serve's own flags rather than the exit code.
		out, err := exec.Command(realBin, "serve", "--help").CombinedOutput()
		realServe = err == nil && bytes.Contains(out, []byte("--admin-addr")) && bytes.Contains(out, []byte("--db"))
	}
})

var _ = SynchronizedAfterSuite(func() {}, func() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
})

// moduleRoot is the directory holding go.mod.
func moduleRoot() string {
	GinkgoHelper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	Expect(err).NotTo(HaveOccurred())
	gomod := strings.TrimSpace(string(out))
	Expect(gomod).NotTo(BeEmpty())
	return filepath.Dir(gomod)
}

// Every spec must leave no goroutine (and no process) behind.
var _ = BeforeEach(func() {
	baseline := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
	})
})

// processGone reports whether pid no longer exists.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// dialable reports whether something accepts TCP connections on addr.
func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// ctxWithTimeout is a context for one start-up.
func ctxWithTimeout(parent context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(parent, d)
	DeferCleanup(cancel)
	return ctx
}
