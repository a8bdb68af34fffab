package refcluster_test

import (
	"fmt"
	"runtime"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/internal/chattest"
	"github.com/bidikit/bidikit/internal/refcluster"
)

// fatalTB hands every Fatalf's message to failed and ends the calling
// goroutine there, as testing's Fatalf does; the rest defers to GinkgoT().
type fatalTB struct{ failed chan string }

func (f *fatalTB) Helper()           {}
func (f *fatalTB) Cleanup(fn func()) { DeferCleanup(fn) }
func (f *fatalTB) TempDir() string   { return GinkgoT().TempDir() }
func (f *fatalTB) Fatalf(s string, a ...any) {
	f.failed <- fmt.Sprintf(s, a...)
	runtime.Goexit()
}

var _ = Describe("a clustered reference", func() {
	It("serves one chat room across instances of one NATS server", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		ins := refcluster.StartN(GinkgoT(), 2, url, nil)
		Expect(ins[0].Addr()).NotTo(Equal(ins[1].Addr()))
		Expect(ins[0].Server().Storage()).To(Equal("jetstream:" + url))
		a := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), ins[0].Addr()), "a")
		b := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), ins[1].Addr()), "b")
		a.Join("r")
		b.Join("r")
		Expect(a.Say("r", "1", 1)).To(Succeed())
		Eventually(ctx, func() int { return len(b.Messages("r")) }).Should(Equal(1))
		Expect(b.Messages("r")[0].GetSender()).To(Equal("a"))
		Expect(a.CloseAndWait()).To(Succeed())
		Expect(b.CloseAndWait()).To(Succeed())
	}, SpecTimeout(60*time.Second))

	It("Kill ends every stream at once; the Killer kills once and never restarts", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		in := refcluster.Start(GinkgoT(), refcluster.Config(url), nil)
		c := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), in.Addr()), "c")
		c.Join("r")
		k := refcluster.NewKiller(in)
		Expect(k.Killed()).NotTo(BeClosed())
		Expect(k.Kill()).To(Succeed())
		Expect(k.Killed()).To(BeClosed())
		Expect(k.Kill()).To(Succeed(), "a second Kill")
		Eventually(ctx, c.Done()).Should(BeClosed())
		Expect(status.Code(c.Err())).To(Equal(codes.Unavailable))
		Expect(c.Err().Error()).NotTo(ContainSubstring("server shutting down"), "a kill is no graceful stop")
		Expect(k.Restart(ctx)).To(MatchError(ContainSubstring("not restarted")))
		in.Stop() // after Kill: returns at once
		Expect(in.Wait()).To(MatchError(ContainSubstring("grpc serve")))
	}, SpecTimeout(60*time.Second))

	It("Stop drains gracefully: streams end with the server's shutdown status", func(ctx SpecContext) {
		in := refcluster.Start(GinkgoT(), refcluster.Config(""), nil)
		Expect(in.Server().Storage()).To(Equal("memory"))
		c := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), in.Addr()), "c")
		c.Join("r")
		in.Stop()
		Eventually(ctx, c.Done()).Should(BeClosed())
		Expect(status.Code(c.Err())).To(Equal(codes.Unavailable))
		Expect(c.Err().Error()).To(ContainSubstring("server shutting down"))
		Expect(in.Wait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("fails its TB when the instance cannot be built", func() {
		t := &fatalTB{failed: make(chan string, 1)}
		cfg := refcluster.Config("")
		cfg.NATSReplicas = 0
		go refcluster.Start(t, cfg, nil)
		Eventually(t.failed).Should(Receive(ContainSubstring("build a reference instance")))
	})
})
