package spawn_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/spawn"
)

// syncBuffer is an io.Writer safe for the output copier and the spec.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startFake starts fakeserve with extra args; it is stopped when the spec
// ends.
func startFake(ctx context.Context, opts spawn.Options) (*spawn.Server, error) {
	opts.Binary = fakeBin
	s, err := spawn.Start(ctx, opts)
	if err == nil {
		DeferCleanup(s.Stop)
	}
	return s, err
}

var _ = Describe("Server with a stand-in binary", func() {
	It("starts, reports its addresses and passes its flags", func(ctx SpecContext) {
		out := &syncBuffer{}
		db := filepath.Join(GinkgoT().TempDir(), "chat.db")
		s, err := startFake(ctx, spawn.Options{DB: db, Output: out, Args: []string{"--mode=ok"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Running()).To(BeTrue())
		for _, a := range []string{s.Addr(), s.AdminAddr()} {
			host, port, err := net.SplitHostPort(a)
			Expect(err).NotTo(HaveOccurred())
			Expect(host).To(Equal("127.0.0.1"))
			Expect(port).NotTo(Equal("0"))
			Expect(dialable(a)).To(BeTrue(), "nothing listens on %s", a)
		}
		Expect(s.Output()).To(ContainElement(ContainSubstring("storage=sqlite:" + db)))
		Expect(out.String()).To(ContainSubstring("bidikit serve: listening grpc=" + s.Addr()))
	}, SpecTimeout(30*time.Second))

	It("kills, then restarts on the same port, then stops", func(ctx SpecContext) {
		s, err := startFake(ctx, spawn.Options{})
		Expect(err).NotTo(HaveOccurred())
		addr, admin, pid := s.Addr(), s.AdminAddr(), s.Pid()

		Expect(s.Kill()).To(Succeed())
		Expect(processGone(pid)).To(BeTrue(), "pid %d still exists after Kill", pid)
		Expect(dialable(addr)).To(BeFalse(), "port %s still open after Kill", addr)
		Expect(s.Running()).To(BeFalse())
		Expect(s.Kill()).To(MatchError(ContainSubstring("not running")))
		Expect(s.Down()).To(Equal([]string{addr}), "a killed server is down (engine.DownReporter)")

		Expect(s.Restart(ctx)).To(Succeed())
		Expect(s.Down()).To(BeEmpty(), "a restarted server is not down")
		Expect(s.Addr()).To(Equal(addr))
		Expect(s.AdminAddr()).To(Equal(admin))
		Expect(s.Pid()).NotTo(Equal(pid))
		Expect(dialable(addr)).To(BeTrue(), "nothing listens on %s after Restart", addr)
		Expect(s.Restart(ctx)).To(MatchError(ContainSubstring("still running")))

		pid = s.Pid()
		Expect(s.Stop()).To(Succeed())
		Expect(processGone(pid)).To(BeTrue())
		Expect(dialable(addr)).To(BeFalse())
		Expect(s.Stop()).To(Succeed(), "Stop is idempotent")
		Expect(s.Output()).To(ContainElement("fakeserve: stopping"), "Stop sends SIGTERM first")
	}, SpecTimeout(60*time.Second))

	It("reports the server's last output when it exits at start-up", func(ctx SpecContext) {
		_, err := startFake(ctx, spawn.Options{Args: []string{"--mode=exit"}})
		Expect(err).To(MatchError(And(ContainSubstring("exited"), ContainSubstring("exit status 3"), ContainSubstring("boom: bad config"))))
	}, SpecTimeout(30*time.Second))

	It("kills a server that never says it is listening", func(ctx SpecContext) {
		pidfile := filepath.Join(GinkgoT().TempDir(), "pid")
		_, err := startFake(ctx, spawn.Options{
			Args:         []string{"--mode=no-ready", "--pidfile", pidfile},
			StartTimeout: 500 * time.Millisecond,
		})
		Expect(err).To(MatchError(And(ContainSubstring("bidikit serve: listening"), ContainSubstring("starting up slowly"))))
		Expect(processGone(readPid(pidfile))).To(BeTrue())
	}, SpecTimeout(30*time.Second))

	It("kills the server when the start-up context ends", func(ctx SpecContext) {
		pidfile := filepath.Join(GinkgoT().TempDir(), "pid")
		_, err := startFake(ctxWithTimeout(ctx, 300*time.Millisecond), spawn.Options{
			Args: []string{"--mode=no-ready", "--pidfile", pidfile},
		})
		Expect(err).To(MatchError(ContainSubstring("interrupted")))
		Expect(processGone(readPid(pidfile))).To(BeTrue())
	}, SpecTimeout(30*time.Second))

	It("SIGKILLs a server that ignores SIGTERM, after the grace period", func(ctx SpecContext) {
		s, err := startFake(ctx, spawn.Options{Args: []string{"--mode=ignore-term"}, StopGrace: 300 * time.Millisecond})
		Expect(err).NotTo(HaveOccurred())
		pid := s.Pid()
		Expect(s.Stop()).To(MatchError(ContainSubstring("did not stop within 300ms")))
		Expect(processGone(pid)).To(BeTrue())
	}, SpecTimeout(30*time.Second))

	It("says so when the server died by itself", func(ctx SpecContext) {
		s, err := startFake(ctx, spawn.Options{Args: []string{"--mode=crash-after"}})
		Expect(err).NotTo(HaveOccurred())
		Eventually(s.Running).WithTimeout(10 * time.Second).Should(BeFalse())
		Expect(s.Down()).To(BeEmpty(), "a server that died by itself is not one the run took down")
		Expect(s.Kill()).To(MatchError(And(ContainSubstring("not running"), ContainSubstring("server exited"), ContainSubstring("panic: oops"))))
		Expect(s.Stop()).To(MatchError(ContainSubstring("panic: oops")))
		Expect(s.Stop()).To(Succeed(), "an unexpected death is reported once")
	}, SpecTimeout(30*time.Second))

	It("fails clearly when the binary does not exist", func(ctx SpecContext) {
		_, err := spawn.Start(ctx, spawn.Options{Binary: filepath.Join(binDir, "missing")})
		Expect(err).To(MatchError(ContainSubstring("missing")))
	}, SpecTimeout(30*time.Second))
})

// readPid reads the pid fakeserve wrote.
func readPid(path string) int {
	GinkgoHelper()
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

var _ = Describe("Server with the real bidikit serve", func() {
	BeforeEach(func() {
		if realBuild != "" {
			Fail(fmt.Sprintf("cannot build bidikit: %s", realBuild))
		}
		if !realServe {
			Fail("`bidikit serve --help` lists no --admin-addr or --db: the serve subcommand regressed")
		}
	})

	It("starts, is killed, restarts on the same port with the same database, and stops", func(ctx SpecContext) {
		db := filepath.Join(GinkgoT().TempDir(), "bidikit.db")
		s, err := spawn.Start(ctx, spawn.Options{Binary: realBin, DB: db})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(s.Stop)
		addr, pid := s.Addr(), s.Pid()
		Expect(grpcReady(ctx, addr)).To(Succeed())

		Expect(s.Kill()).To(Succeed())
		Expect(processGone(pid)).To(BeTrue())
		Expect(dialable(addr)).To(BeFalse())

		Expect(s.Restart(ctx)).To(Succeed())
		Expect(s.Addr()).To(Equal(addr))
		Expect(grpcReady(ctx, addr)).To(Succeed())
		Eventually(func() (int, error) { return healthz(ctx, s.AdminAddr()) }).
			WithTimeout(10 * time.Second).Should(Equal(http.StatusOK))
		Expect(s.Output()).To(ContainElement(ContainSubstring("storage=sqlite:" + db)))

		pid = s.Pid()
		Expect(s.Stop()).To(Succeed())
		Expect(processGone(pid)).To(BeTrue())
		Expect(dialable(addr)).To(BeFalse())
	}, SpecTimeout(60*time.Second))
})

// serverEnv is a fault.Env holding only a spawned server.
type serverEnv struct{ s *spawn.Server }

func (e serverEnv) Proxy() *toxiproxy.Proxy { return nil }
func (e serverEnv) Server() fault.Server    { return e.s }

var _ = Describe("the kill-server fault on a spawned server", func() {
	It("kills it and brings it back on the same address", func(ctx SpecContext) {
		s, err := startFake(ctx, spawn.Options{})
		Expect(err).NotTo(HaveOccurred())
		addr, pid := s.Addr(), s.Pid()
		f, _, err := fault.New("kill-server", func(into any) error {
			into.(*fault.KillServerParams).RestartAfter = 200 * time.Millisecond
			return nil
		})
		Expect(err).NotTo(HaveOccurred())
		runCtx, cancel := context.WithCancel(ctx)
		DeferCleanup(cancel)

		Expect(f.Inject(runCtx, serverEnv{s}, nil)).To(Succeed())
		Expect(processGone(pid)).To(BeTrue(), "Inject returns once the server is dead")
		Eventually(s.Running).WithTimeout(20 * time.Second).Should(BeTrue())
		Expect(s.Addr()).To(Equal(addr))
		Expect(dialable(addr)).To(BeTrue())
	}, SpecTimeout(30*time.Second))
})
