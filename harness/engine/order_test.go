package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/harness/shard"
	"github.com/bidikit/bidikit/reference"
)

// orderTap is an engine.Tap that keeps a copy of every event (its own type:
// failover_test.go has another, owned elsewhere). mu guards
// evs (Events runs on the engine's dispatcher, the spec reads from its own
// goroutine).
type orderTap struct {
	mu  sync.Mutex
	evs []event.Event
}

func (l *orderTap) Begin(time.Time)  {}
func (l *orderTap) End(engine.Final) {}
func (l *orderTap) Events(b []event.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, b...)
	l.mu.Unlock()
}

// client returns client i's events, in the order it emitted them.
func (l *orderTap) client(i int) []event.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []event.Event
	for _, e := range l.evs {
		if e.Client == i {
			out = append(out, e)
		}
	}
	return out
}

// brokenThenLeft reports whether evs hold a broken stream's Disconnect
// followed by the Leave of a room joined on that stream.
func brokenThenLeft(evs []event.Event) bool {
	broken := false
	for _, e := range evs {
		switch {
		case e.Kind == event.Connect:
			broken = false
		case e.Kind == event.Disconnect && e.Code != codes.OK:
			broken = true
		case e.Kind == event.Leave && broken:
			return true
		}
	}
	return false
}

// brokeInRoom reports whether evs hold a Join, then a broken stream's
// Disconnect and a Leave, in either order.
func brokeInRoom(evs []event.Event) bool {
	joined, broken, left := false, false, false
	for _, e := range evs {
		switch {
		case e.Kind == event.Join:
			joined = true
		case joined && e.Kind == event.Disconnect && e.Code != codes.OK:
			broken = true
		case joined && e.Kind == event.Leave:
			left = true
		}
	}
	return broken && left
}

// leaveOrder checks that every Leave follows its stream's Disconnect: no
// Leave between a Join and the Disconnect that ended the Join's stream. It
// returns the first offending client history, or "".
func leaveOrder(evs []event.Event) string {
	ended := true // the current stream's Disconnect has been seen
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind.String())
		switch e.Kind {
		case event.Connect:
			ended = false
		case event.Disconnect:
			ended = true
		case event.Leave:
			if !ended {
				return fmt.Sprintf("Leave of %q before its stream's Disconnect: %s", e.Scope, strings.Join(kinds, " "))
			}
		}
	}
	return ""
}

var _ = Describe("a broken stream's events", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	DescribeTable("come as the Disconnect first, then the Leaves of the rooms it ended",
		func(ctx SpecContext, fn func(fault.Client)) {
			_, addr, stop := startRecorder(false)
			DeferCleanup(stop)
			log := &orderTap{}
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := engine.Run(rctx, faultScenario(fn), engine.WithTarget(addr), engine.WithTap(log))
				done <- err
			}()
			for i := range 2 {
				Eventually(func() []event.Event { return log.client(i) }).WithTimeout(15*time.Second).
					Should(Satisfy(brokeInRoom), "client %d: no broken stream with a room and its Leave", i)
			}
			cancel()
			Eventually(done).WithTimeout(15 * time.Second).Should(Receive())
			for i := range 2 {
				Expect(leaveOrder(log.client(i))).To(BeEmpty(), "client %d", i)
				Expect(log.client(i)).To(Satisfy(brokenThenLeft), "client %d", i)
			}
		},
		Entry("abrupt close of the connection", func(c fault.Client) { c.AbruptClose() }, SpecTimeout(40*time.Second)),
		Entry("the client cancelling the stream", func(c fault.Client) { c.CancelStream() }, SpecTimeout(40*time.Second)),
	)
})

var _ = Describe("game-invariants against a reference server with non-default rules", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("judges the players by the rules the server announced, with no check parameters", func(ctx SpecContext) {
		cfg := reference.DefaultConfig()
		cfg.Options.Addr = "127.0.0.1:0"
		cfg.Options.AdminAddr = "127.0.0.1:0"
		// A 3000x2000 map and steps up to 25: players start at (1500, 1000)
		// and walk 20 per input (step_fraction 0.8), both beyond the
		// reference defaults (1000x1000, max_step 10).
		cfg.Game.Width, cfg.Game.Height, cfg.Game.MaxStep, cfg.Game.MaxInputsPerTick = 3000, 2000, 25, 6
		sctx, stopServer := context.WithCancel(context.Background())
		srv, err := reference.Build(cfg, slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError})))
		Expect(err).NotTo(HaveOccurred())
		Expect(srv.Start(sctx)).To(Succeed())
		DeferCleanup(func() {
			stopServer()
			_ = srv.Wait()
		})

		file := filepath.Join("..", "..", "scenarios", "smoke", "game-players.yaml")
		yaml, err := os.ReadFile(file)
		Expect(err).NotTo(HaveOccurred())
		s, err := scenario.Parse(file, yaml)
		Expect(err).NotTo(HaveOccurred())
		s.Duration = 3 * time.Second

		By("running it, its events written to a raw file as a shard would")
		raw := filepath.Join(GinkgoT().TempDir(), "shard-0.raw")
		w, err := shard.Create(raw)
		Expect(err).NotTo(HaveOccurred())
		sec := w.Section(shard.HeaderFor(s, srv.Addr(), 0, 1))
		res, err := engine.Run(ctx, s, engine.WithTarget(srv.Addr()), engine.WithServerEnv("http://"+srv.AdminAddr()), engine.WithTap(sec))
		Expect(err).NotTo(HaveOccurred(), describe(res))
		Expect(sec.Close(res)).To(Succeed())
		Expect(w.Close()).To(Succeed())
		Expect(res.Messages.Sent).To(BeNumerically(">", 0))
		Expect(res.Passed).To(BeTrue(), describe(res))
		expectAnnouncedRules(res)

		By("merging the raw file: the announced rules survive encoding/gob")
		merged, err := shard.Merge(ctx, raw)
		Expect(err).NotTo(HaveOccurred())
		Expect(merged).To(HaveLen(1))
		Expect(merged[0].Result.Passed).To(BeTrue(), describe(merged[0].Result))
		expectAnnouncedRules(merged[0].Result)
	}, SpecTimeout(2*time.Minute))
})

// expectAnnouncedRules asserts res has a game-invariants verdict that
// passed and judged no membership by the reference defaults.
func expectAnnouncedRules(res result.Scenario) {
	GinkgoHelper()
	for _, v := range res.Checks {
		if v.Name == "game-invariants" {
			Expect(v.Status).To(Equal(check.Pass), describe(res))
			Expect(v.Summary).NotTo(ContainSubstring("defaults"), describe(res))
			return
		}
	}
	Fail("no game-invariants verdict:\n" + describe(res))
}
