package fault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/fault"
)

// startEcho runs a loopback TCP echo server until the spec ends.
func startEcho() string {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	DeferCleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// startProxy runs a proxy in front of a fresh echo server until the spec
// ends.
func startProxy(ctx context.Context) *toxiproxy.Proxy {
	GinkgoHelper()
	p, stop, err := fault.StartProxy(ctx, startEcho())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)
	return p
}

// dial connects to the proxy; the connection is closed when the spec ends.
func dial(p *toxiproxy.Proxy) net.Conn {
	GinkgoHelper()
	c, err := net.Dial("tcp", p.Listen)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(c.Close)
	return c
}

// echo writes payload and reads the same number of bytes back, within a
// generous deadline; it returns what came back and how long it took.
func echo(c net.Conn, payload []byte) ([]byte, time.Duration, error) {
	Expect(c.SetDeadline(time.Now().Add(20 * time.Second))).To(Succeed())
	start := time.Now()
	werr := make(chan error, 1)
	go func() { _, err := c.Write(payload); werr <- err }()
	got := make([]byte, len(payload))
	_, err := io.ReadFull(c, got)
	elapsed := time.Since(start)
	return got, elapsed, errors.Join(err, <-werr)
}

// toxicsOf lists the proxy's toxics.
func toxicsOf(p *toxiproxy.Proxy) []*toxics.ToxicWrapper {
	var out []*toxics.ToxicWrapper
	for _, t := range p.Toxics.GetToxicArray() {
		out = append(out, t.(*toxics.ToxicWrapper))
	}
	return out
}

// inject builds the named fault and injects it on p under a context that
// ends with the spec.
func inject(p *toxiproxy.Proxy, name, params string) context.CancelFunc {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(context.Background())
	DeferCleanup(cancel)
	Expect(mustBuild(name, params).Inject(ctx, env{proxy: p}, nil)).To(Succeed())
	return cancel
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

var _ = Describe("StartProxy", func() {
	It("forwards to the upstream until stopped", func(ctx SpecContext) {
		p, stop, err := fault.StartProxy(ctx, startEcho())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)
		c := dial(p)
		got, _, err := echo(c, []byte("hello"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(got)).To(Equal("hello"))

		stop()
		stop() // idempotent
		_, err = io.ReadAll(c)
		Expect(err).NotTo(HaveOccurred(), "stop closes proxied connections")
		_, err = net.DialTimeout("tcp", p.Listen, time.Second)
		Expect(err).To(HaveOccurred(), "stop closes the listener")
	}, SpecTimeout(30*time.Second))

	It("stops when its context is done", func(ctx SpecContext) {
		pctx, cancel := context.WithCancel(ctx)
		p, stop, err := fault.StartProxy(pctx, startEcho())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)
		cancel()
		Eventually(func() error {
			c, err := net.DialTimeout("tcp", p.Listen, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}).WithTimeout(10 * time.Second).Should(HaveOccurred())
	}, SpecTimeout(30*time.Second))

	It("refuses a done context", func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := fault.StartProxy(ctx, "127.0.0.1:1")
		Expect(err).To(MatchError(context.Canceled))
	})
})

var _ = Describe("connection faults", func() {
	It("need a proxy", func() {
		err := mustBuild("latency", "").Inject(context.Background(), env{}, nil)
		Expect(err).To(MatchError(ContainSubstring("proxy")))
	})

	It("latency adds at least the configured delay, then goes away with the run", func(ctx SpecContext) {
		p := startProxy(ctx)
		c := dial(p)
		end := inject(p, "latency", "latency: 200ms")
		Expect(toxicsOf(p)).To(HaveLen(2), "one toxic per direction")
		_, took, err := echo(c, []byte("ping"))
		Expect(err).NotTo(HaveOccurred())
		Expect(took).To(BeNumerically(">=", 200*time.Millisecond))

		end()
		Eventually(func() []*toxics.ToxicWrapper { return toxicsOf(p) }).WithTimeout(10 * time.Second).Should(BeEmpty())
		got, _, err := echo(c, []byte("pong"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(got)).To(Equal("pong"))
	}, SpecTimeout(30*time.Second))

	It("adds a toxic with toxicity 1 on the chosen direction only", func(ctx SpecContext) {
		p := startProxy(ctx)
		inject(p, "latency", "{latency: 50ms, jitter: 10ms, stream: upstream}")
		ts := toxicsOf(p)
		Expect(ts).To(HaveLen(1))
		Expect(ts[0].Type).To(Equal("latency"))
		Expect(ts[0].Stream).To(Equal("upstream"))
		Expect(ts[0].Toxicity).To(BeEquivalentTo(1.0))
		Expect(ts[0].Toxic).To(Equal(&toxics.LatencyToxic{Latency: 50, Jitter: 10}))
	}, SpecTimeout(30*time.Second))

	It("removes its toxic after its duration without blocking Inject", func(ctx SpecContext) {
		p := startProxy(ctx)
		inject(p, "latency", "{latency: 100ms, duration: 300ms}")
		Expect(toxicsOf(p)).To(HaveLen(2), "Inject returns with the toxic in effect")
		Eventually(func() []*toxics.ToxicWrapper { return toxicsOf(p) }).WithTimeout(10 * time.Second).Should(BeEmpty())
		got, _, err := echo(dial(p), []byte("back to normal"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(got)).To(Equal("back to normal"))
	}, SpecTimeout(30*time.Second))

	It("overlapping firings of one fault do not collide", func(ctx SpecContext) {
		p := startProxy(ctx)
		inject(p, "latency", "latency: 10ms")
		inject(p, "latency", "latency: 10ms")
		Expect(toxicsOf(p)).To(HaveLen(4))
	}, SpecTimeout(30*time.Second))

	It("reset makes connections fail", func(ctx SpecContext) {
		p := startProxy(ctx)
		before := dial(p)
		inject(p, "reset", "")
		for _, c := range []net.Conn{before, dial(p)} {
			_, _, err := echo(c, []byte("ping"))
			Expect(err).To(HaveOccurred())
			Expect(errors.Is(err, os.ErrDeadlineExceeded)).To(BeFalse(), "the connection must fail, not stall: %v", err)
		}
	}, SpecTimeout(60*time.Second))

	It("blackhole makes reads stall, and closes held connections when it ends", func(ctx SpecContext) {
		p := startProxy(ctx)
		c := dial(p)
		inject(p, "blackhole", "duration: 1s")
		_, err := c.Write([]byte("ping"))
		Expect(err).NotTo(HaveOccurred())
		Expect(c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))).To(Succeed())
		_, err = c.Read(make([]byte, 4))
		Expect(err).To(MatchError(os.ErrDeadlineExceeded))

		Eventually(func() []*toxics.ToxicWrapper { return toxicsOf(p) }).WithTimeout(10 * time.Second).Should(BeEmpty())
		Expect(c.SetReadDeadline(time.Now().Add(10 * time.Second))).To(Succeed())
		_, err = io.ReadAll(c)
		Expect(err).NotTo(HaveOccurred(), "toxiproxy closes connections the blackhole held")
		got, _, err := echo(dial(p), []byte("pong"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(got)).To(Equal("pong"))
	}, SpecTimeout(30*time.Second))

	It("bandwidth slows traffic and delivers every byte intact", func(ctx SpecContext) {
		p := startProxy(ctx)
		inject(p, "bandwidth", "rate: 64")
		payload := randomBytes(32 << 10)
		got, took, err := echo(dial(p), payload)
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Equal(got, payload)).To(BeTrue(), "bytes changed through the bandwidth toxic")
		// 32 KiB at 64 KB/s takes about 512ms in each direction.
		Expect(took).To(BeNumerically(">=", 400*time.Millisecond))
	}, SpecTimeout(30*time.Second))

	It("slicer delivers every byte intact, slowly", func(ctx SpecContext) {
		p := startProxy(ctx)
		inject(p, "slicer", "{average_size: 64, size_variation: 16, delay: 1ms}")
		payload := randomBytes(16 << 10)
		got, took, err := echo(dial(p), payload)
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Equal(got, payload)).To(BeTrue(), "bytes changed through the slicer toxic")
		// ~256 slices a direction, each followed by a 1ms pause.
		Expect(took).To(BeNumerically(">=", 100*time.Millisecond))
	}, SpecTimeout(30*time.Second))
})
