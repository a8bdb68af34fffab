package engine_test

import (
	"context"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/scenario"
)

// stopProxy is a connection fault that stops the proxy: it only affects the
// clients if they really dial through it.
type stopProxy struct{ seen chan *toxiproxy.Proxy }

func (f stopProxy) Inject(_ context.Context, env fault.Env, _ []fault.Target) error {
	p := env.Proxy()
	f.seen <- p
	if p != nil {
		p.Stop()
	}
	return nil
}

var _ = Describe("connection faults", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("route every client through a toxiproxy proxy in front of the target", func(ctx SpecContext) {
		_, addr, stop := startRecorder(false)
		DeferCleanup(stop)
		seen := make(chan *toxiproxy.Proxy, 1)
		s := &scenario.Scenario{Name: "proxy", File: "proxy.yaml", Service: scenario.Chat, Seed: 1, Duration: 2 * time.Second,
			Roles: []scenario.Role{{Name: "chat", Count: 2, Behaviour: "chatter", Rate: 5}},
			Faults: []scenario.FaultStep{withTestFault(scenario.FaultStep{Scope: fault.Connection,
				At: time.Second, Probability: 1}, stopProxy{seen})}}
		var maxConnected atomic.Int64
		res, err := engine.Run(ctx, s, engine.WithTarget(addr), engine.WithProgress(func(p engine.Progress) {
			maxConnected.Store(max(maxConnected.Load(), int64(p.Connected)))
		}, 50*time.Millisecond))
		Expect(err).NotTo(HaveOccurred())
		var p *toxiproxy.Proxy
		Expect(seen).To(Receive(&p))
		Expect(p).NotTo(BeNil())
		Expect(p.Upstream).To(Equal(addr))
		Expect(res.Messages.Acked).To(BeNumerically(">", 0))
		// Stopping the proxy cut the clients' connections.
		Expect(res.Errors).To(HaveKey("UNAVAILABLE"))
		Expect(maxConnected.Load()).To(BeEquivalentTo(2), "progress reported both clients connected")
	}, SpecTimeout(30*time.Second))
})
