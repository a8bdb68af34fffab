package cluster_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/reference/cluster"
)

var _ = Describe("EmbedConfig", func() {
	DescribeTable("Check rejects a configuration that cannot work, naming the field",
		func(mod func(*cluster.EmbedConfig), flag, detail string) {
			c := cluster.EmbedConfig{Dir: "/tmp/js", ClusterListen: "127.0.0.1:6222", Routes: []string{"nats-route://127.0.0.1:6222"}}
			mod(&c)
			err := c.Check()
			Expect(err).To(MatchError(HavePrefix(flag)))
			Expect(err).To(MatchError(ContainSubstring(detail)))
			_, err = c.Start(nil)
			Expect(err).To(MatchError(HavePrefix(flag)), "Start checks too")
		},
		Entry("no storage directory", func(c *cluster.EmbedConfig) { c.Dir = "" }, "EmbedConfig.Dir", "is empty"),
		Entry("client address without port", func(c *cluster.EmbedConfig) { c.Listen = "127.0.0.1" }, "EmbedConfig.Listen", "want host:port"),
		Entry("server name with a space", func(c *cluster.EmbedConfig) { c.ServerName = "node 1" }, "EmbedConfig.ServerName", "without spaces"),
		Entry("routes without a cluster address", func(c *cluster.EmbedConfig) { c.ClusterListen = "" }, "EmbedConfig.Routes", "needs EmbedConfig.ClusterListen"),
		Entry("cluster address without routes", func(c *cluster.EmbedConfig) { c.Routes = nil }, "EmbedConfig.ClusterListen", "needs EmbedConfig.Routes"),
		Entry("cluster address without port", func(c *cluster.EmbedConfig) { c.ClusterListen = "127.0.0.1" }, "EmbedConfig.ClusterListen", "want host:port"),
		Entry("cluster port out of range", func(c *cluster.EmbedConfig) { c.ClusterListen = "127.0.0.1:70000" }, "EmbedConfig.ClusterListen", "bad port"),
		Entry("cluster address equal to the client address", func(c *cluster.EmbedConfig) { c.Listen = "127.0.0.1:6222" }, "EmbedConfig.ClusterListen", "same address"),
		Entry("route with another scheme", func(c *cluster.EmbedConfig) { c.Routes = []string{"http://127.0.0.1:6222"} }, "EmbedConfig.Routes", "want nats-route://host:port"),
		Entry("route without scheme", func(c *cluster.EmbedConfig) { c.Routes = []string{"127.0.0.1:6222"} }, "EmbedConfig.Routes", "want nats-route://host:port"),
		Entry("route without port", func(c *cluster.EmbedConfig) { c.Routes = []string{"nats-route://127.0.0.1"} }, "EmbedConfig.Routes", "want nats-route://host:port"),
		Entry("route to port 0", func(c *cluster.EmbedConfig) { c.Routes = []string{"nats-route://127.0.0.1:0"} }, "EmbedConfig.Routes", "non-zero port"),
		Entry("route with a path", func(c *cluster.EmbedConfig) { c.Routes = []string{"nats-route://127.0.0.1:6222/x"} }, "EmbedConfig.Routes", "want nats-route://host:port"),
		Entry("second route bad", func(c *cluster.EmbedConfig) {
			c.Routes = []string{"nats-route://127.0.0.1:6222", "nats-route://[::1"}
		}, "EmbedConfig.Routes", `"nats-route://[::1"`),
	)

	It("accepts a standalone server and a cluster member, and names members after host and route port", func() {
		Expect(cluster.EmbedConfig{Dir: "/tmp/js"}.Check()).To(Succeed())
		Expect(cluster.EmbedConfig{Dir: "/tmp/js", ClusterListen: "127.0.0.1:6222",
			Routes: []string{"nats-route://127.0.0.1:6222", "nats://127.0.0.1:6223"}}.Check()).To(Succeed())

		e, err := cluster.EmbedConfig{Dir: GinkgoT().TempDir()}.Start(nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(e.Shutdown)
		Expect(e.Clustered()).To(BeFalse())
		Expect(e.Name()).To(Equal("bidikit-embedded"))
		Expect(e.RouteURL()).To(BeEmpty())
		Expect(e.WaitJetStreamReady(context.Background())).To(Succeed())
	})
})

var _ = Describe("Embedded JetStream cluster", func() {
	It("forms from three embedded servers; an R3 room loses no acknowledged message when one server goes", func(ctx SpecContext) {
		// Three servers, each routed to all three (itself included, as the
		// flags' documentation says): every one bootstraps a meta group of 3.
		ports := freePorts(3)
		var routes []string
		for _, p := range ports {
			routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
		}
		var es []*cluster.Embedded
		for _, p := range ports {
			e, err := cluster.EmbedConfig{
				Dir:           GinkgoT().TempDir(),
				Listen:        "127.0.0.1:0",
				ClusterListen: "127.0.0.1:" + strconv.Itoa(p),
				Routes:        routes,
			}.Start(testLogger())
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(e.Shutdown)
			Expect(e.Clustered()).To(BeTrue())
			Expect(e.Name()).To(HaveSuffix("-" + strconv.Itoa(p))) // default: bidikit-<host>-<route port>
			Expect(e.RouteURL()).To(Equal("nats-route://127.0.0.1:" + strconv.Itoa(p)))
			es = append(es, e)
		}
		Expect(es[0].Name()).NotTo(Equal(es[1].Name()))
		for _, e := range es {
			Eventually(e.Routes).WithContext(ctx).Should(BeNumerically(">=", 2), "routes of %s", e.Name())
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			Expect(e.WaitJetStreamReady(wctx)).To(Succeed())
			cancel()
		}

		short := func(c *cluster.Config) { c.Replicas = 3; c.Timeout = 2 * time.Second }
		writer := newLog(es[0].ClientURL(), short) // on server 1
		reader := newLog(es[1].ClientURL(), short) // on server 2
		const room = "lobby"
		// An R3 stream is placed once the meta leader knows three live peers.
		Eventually(func() error { _, err := writer.Head(ctx, room); return err }).WithContext(ctx).Should(Succeed())

		js := jsOn(es[1].ClientURL())
		streamCluster := func() *jetstream.ClusterInfo {
			s, err := js.Stream(ctx, writer.StreamName(room))
			if err != nil {
				return nil
			}
			return s.CachedInfo().Cluster
		}
		Eventually(func(g Gomega) {
			ci := streamCluster()
			g.Expect(ci).NotTo(BeNil())
			g.Expect(ci.Leader).NotTo(BeEmpty())
			g.Expect(ci.Replicas).To(HaveLen(2), "R3: a leader and two followers")
		}).WithContext(ctx).Should(Succeed())

		By("following the room on server 2 and publishing on server 1")
		var feed follower
		stop, err := reader.Follow(room, 0, feed.add, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)

		const total, before, killAt = 100, 30, 45
		key := func(i int) string { return fmt.Sprintf("m%03d", i) }
		acked := make([]uint64, total+1) // acked[i]: seq of key(i); the spec goroutine's until the publisher starts
		for i := 1; i <= before; i++ {
			seq, err := publishRetry(ctx, writer, room, key(i))
			Expect(err).NotTo(HaveOccurred())
			acked[i] = seq
		}
		Eventually(feed.len).WithContext(ctx).Should(Equal(before))

		// The server to lose is server 3 (neither the writer's nor the
		// reader's): make it the stream's leader first, the harder case.
		victim := es[2]
		nc := ncOn(es[1].ClientURL())
		Eventually(func() string {
			ci := streamCluster()
			if ci == nil {
				return ""
			}
			if ci.Leader == victim.Name() {
				return ci.Leader
			}
			req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, victim.Name())
			_, _ = nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+writer.StreamName(room), []byte(req), 2*time.Second)
			return ""
		}).WithContext(ctx).WithPolling(500 * time.Millisecond).Should(Equal(victim.Name()))

		// The publisher owns acked[before+1:] and progress until it sends
		// its result; the spec reads them after receiving it.
		var progress atomic.Int64
		result := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			for i := before + 1; i <= total; i++ {
				seq, err := publishRetry(ctx, writer, room, key(i))
				if err != nil {
					result <- err
					return
				}
				acked[i] = seq
				progress.Store(int64(i))
			}
			result <- nil
		}()
		Eventually(progress.Load).WithContext(ctx).Should(BeNumerically(">=", killAt))
		GinkgoWriter.Printf("stopping %s, the stream leader, after %d acknowledged messages\n", victim.Name(), progress.Load())
		Expect(victim.Shutdown()).To(Succeed())
		var pubErr error
		By("waiting for the publisher to finish after the loss")
		Eventually(result).WithContext(ctx).WithTimeout(45 * time.Second).Should(Receive(&pubErr))
		Expect(pubErr).NotTo(HaveOccurred())

		// Every acknowledged message is in the log, once, at its acked seq:
		// with de-duplication by key, the seqs are exactly 1..total.
		for i := 1; i <= total; i++ {
			Expect(acked[i]).To(BeEquivalentTo(i), "seq of %s", key(i))
		}
		Eventually(func(g Gomega) {
			ci := streamCluster()
			g.Expect(ci).NotTo(BeNil())
			g.Expect(ci.Leader).NotTo(BeEmpty())
			g.Expect(ci.Leader).NotTo(Equal(victim.Name()))
		}).WithContext(ctx).Should(Succeed())
		By("reading everything back on server 2")
		Eventually(feed.len).WithContext(ctx).Should(Equal(total))
		got := feed.snapshot()
		for i, m := range got {
			Expect(m.seq).To(BeEquivalentTo(i+1), "follower: message %d", i)
			Expect(m.payload).To(Equal(key(i+1)), "follower: message at seq %d", m.seq)
		}
		var ranged []string
		Expect(reader.Range(ctx, room, 1, total, func(seq uint64, p []byte) error {
			if want := uint64(len(ranged) + 1); seq != want {
				return fmt.Errorf("range: seq %d, want %d", seq, want)
			}
			ranged = append(ranged, string(p))
			return nil
		})).To(Succeed())
		Expect(ranged).To(HaveLen(total))
		Expect(ranged).To(Equal(payloads(got)))
		h, err := reader.Head(ctx, room)
		Expect(err).NotTo(HaveOccurred())
		Expect(h.Last).To(BeEquivalentTo(total), "no extra (duplicate) message")
	}, SpecTimeout(90*time.Second))
})

// freePorts returns n distinct loopback ports that were free a moment ago
// (a route list names every member, so the ports are fixed before start).
func freePorts(n int) []int {
	GinkgoHelper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// publishRetry publishes one message and waits for its acknowledgement,
// resending with the same key after an error (at most 40 tries), as a
// client does after a failover.
func publishRetry(ctx context.Context, l *cluster.Log, room, key string) (uint64, error) {
	var last error
	for range 40 {
		ch := make(chan error, 1)
		var seq uint64
		l.Publish(room, key, []byte(key), func(s uint64, _ bool, err error) { seq = s; ch <- err })
		if last = <-ch; last == nil {
			return seq, nil
		}
		GinkgoWriter.Printf("publish %s failed, resending: %v\n", key, last)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("publish %s: 40 tries failed, last: %w", key, last)
}

// follower collects what a Follow delivers; fn runs on the Log's delivery
// goroutine, the spec reads under mu.
type follower struct {
	mu   sync.Mutex
	msgs []fedMsg
}

type fedMsg struct {
	seq     uint64
	payload string
}

func (f *follower) add(seq uint64, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, fedMsg{seq, string(p)})
}

func (f *follower) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.msgs)
}

func (f *follower) snapshot() []fedMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fedMsg(nil), f.msgs...)
}

func payloads(ms []fedMsg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.payload
	}
	return out
}

// ncOn is a plain NATS connection to url, closed at cleanup.
func ncOn(url string) *nats.Conn {
	GinkgoHelper()
	nc, err := cluster.Connect(url, "test admin", nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	return nc
}

// jsOn is a JetStream client on its own connection to url.
func jsOn(url string) jetstream.JetStream {
	GinkgoHelper()
	js, err := jetstream.New(ncOn(url))
	Expect(err).NotTo(HaveOccurred())
	return js
}
