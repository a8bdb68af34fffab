package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/reference"
)

// startReference starts the reference server in-process (what `bidikit
// run` without --target does); it stops at cleanup.
func startReference() *reference.Server {
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError}))
	srv, err := reference.StartDefault(ctx, log)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		cancel()
		_ = srv.Wait()
	})
	return srv
}

// hosts reports whether the reference server registered the service yet.
func hosts(srv *reference.Server, service string) bool {
	names := map[string]string{scenario.Chat: "bidikit.chat.v1.ChatService",
		scenario.Collab: "bidikit.collab.v1.CollabService", scenario.Game: "bidikit.game.v1.GameService"}
	_, ok := srv.GRPC().GetServiceInfo()[names[service]]
	return ok
}

func describe(res result.Scenario) string {
	s := fmt.Sprintf("%s passed=%v failure=%q msgs=%+v errors=%v\n", res.Name, res.Passed, res.Failure, res.Messages, res.Errors)
	for _, v := range res.Checks {
		s += fmt.Sprintf("  %s %s %d %s %v\n", v.Name, v.Status, v.Violations, v.Summary, v.Evidence)
	}
	return s
}

var _ = Describe("the smoke suite against the reference server", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("runs every smoke scenario with every check passing, leaving no harness goroutine behind", func(ctx SpecContext) {
		srv := startReference()
		scs, err := scenario.Load(filepath.Join("..", "..", "scenarios", "smoke"))
		Expect(err).NotTo(HaveOccurred())
		Expect(scs).NotTo(BeEmpty())
		for _, s := range scs {
			Expect(hosts(srv, s.Service)).To(BeTrue(), "the reference server does not host %s (scenario %s)", s.Service, s.Name)
			res, err := engine.Run(ctx, s, engine.WithTarget(srv.Addr()), engine.WithServerEnv("http://"+srv.AdminAddr()))
			Expect(err).NotTo(HaveOccurred(), describe(res))
			Expect(res.Passed).To(BeTrue(), describe(res))
			Expect(res.Messages.Sent).To(BeNumerically(">", 0))
			Expect(res.Clients).To(Equal(s.Clients()))
			Expect(res.Timeline).NotTo(BeEmpty())
			GinkgoWriter.Print(describe(res))
		}
	}, SpecTimeout(3*time.Minute))
})

var _ = Describe("run ids", func() {
	It("keep a second run against a server that kept the first run's messages from being taken for resends", func(ctx SpecContext) {
		srv := startReference()
		scs, err := scenario.Load(filepath.Join("..", "..", "scenarios", "smoke", "chat-rooms.yaml"))
		Expect(err).NotTo(HaveOccurred())
		s := scs[0]
		run := func(opts ...engine.Option) result.Scenario {
			// The admin URL: without it the scenario's leaks check is not measurable.
			res, err := engine.Run(ctx, s, append([]engine.Option{engine.WithTarget(srv.Addr()), engine.WithServerEnv("http://" + srv.AdminAddr())}, opts...)...)
			Expect(err).NotTo(HaveOccurred(), describe(res))
			return res
		}
		first := run(engine.WithRunID("same"))
		Expect(first.RunID).To(Equal("same"))
		Expect(first.Messages.Delivered).To(BeNumerically(">", 0))

		By("the same run id again: the server de-duplicates, so little is delivered (what the random default avoids)")
		again := run(engine.WithRunID("same"))
		Expect(again.Messages.Delivered).To(BeNumerically("<", first.Messages.Delivered/2), describe(again))

		By("the default: a fresh random run id, everything delivered again")
		fresh := run()
		Expect(fresh.RunID).To(MatchRegexp(`^[0-9a-f]{12}$`))
		Expect(fresh.Passed).To(BeTrue(), describe(fresh))
		Expect(fresh.Messages.Delivered).To(BeNumerically(">", first.Messages.Delivered/2), describe(fresh))
	}, SpecTimeout(3*time.Minute))
})
