package reference

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"

	"github.com/bidikit/bidikit/internal/readyread"
)

// countingPool is a mem.BufferPool that counts what it lends.
type countingPool struct{ gets, puts atomic.Int64 }

// held is how many buffers are lent and not given back.
func (p *countingPool) held() int64 { return p.gets.Load() - p.puts.Load() }

func (p *countingPool) Get(n int) *[]byte { p.gets.Add(1); b := make([]byte, n); return &b }
func (p *countingPool) Put(*[]byte)       { p.puts.Add(1) }

var _ = Describe("reads that pin no buffer while they wait (ReadOnReady)", func() {
	// pair returns the server side of a loopback TCP connection, wrapped as
	// Start wraps it (limit, then flood guard), and the client side.
	pair := func() (net.Conn, net.Conn) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(lis.Close)
		guarded := newFloodListener(newLimitListener(lis, 10, prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}),
			prometheus.NewGauge(prometheus.GaugeOpts{Name: "o"})), H2Limits{}.mustDefaults(), nil)
		client, err := net.Dial("tcp", lis.Addr().String())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = client.Close() })
		server, err := guarded.Accept()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = server.Close() })
		return server, client
	}

	type result struct {
		buf *[]byte
		n   int
		err error
	}
	read := func(c net.Conn, pool *countingPool) <-chan result {
		out := make(chan result, 1)
		go func() {
			buf, n, err := c.(readyread.ReadyReader).ReadOnReady(4096, pool)
			out <- result{buf, n, err}
		}()
		return out
	}

	It("takes a buffer only once bytes arrived, judges them, and gives none back on EOF", func(ctx SpecContext) {
		server, client := pair()
		pool := &countingPool{}
		got := read(server, pool)
		// A read tries once before it waits (a Get and a Put): what is
		// judged is what is held once it waits.
		Eventually(pool.puts.Load).WithContext(ctx).Should(BeNumerically(">=", 1), "the read's first try")
		Consistently(pool.held).WithTimeout(300*time.Millisecond).Should(BeZero(), "an idle connection holds no read buffer")

		_, err := client.Write([]byte(http2.ClientPreface))
		Expect(err).NotTo(HaveOccurred())
		var r result
		Eventually(got).WithContext(ctx).Should(Receive(&r))
		Expect(r.err).NotTo(HaveOccurred())
		Expect(string((*r.buf)[:r.n])).To(Equal(http2.ClientPreface[:r.n]))
		Expect(pool.held()).To(BeEquivalentTo(1), "the one buffer with the bytes")
		Expect(server.(*floodGuard).preface).To(Equal(len(http2.ClientPreface)-r.n), "the guard saw the bytes")

		Expect(client.Close()).To(Succeed())
		for range 3 { // the rest of the preface, if it came apart, then EOF
			Eventually(read(server, pool)).WithContext(ctx).Should(Receive(&r))
			if r.err != nil {
				break
			}
		}
		Expect(r.err).To(MatchError(io.EOF))
		Expect(r.buf).To(BeNil())
	}, SpecTimeout(20*time.Second))

	It("fails a read blocked on a connection that is closed, returning the buffer", func(ctx SpecContext) {
		server, _ := pair()
		pool := &countingPool{}
		got := read(server, pool)
		Expect(server.Close()).To(Succeed())
		var r result
		Eventually(got).WithContext(ctx).Should(Receive(&r))
		Expect(r.err).To(HaveOccurred())
		Expect(r.buf).To(BeNil())
		Expect(pool.held()).To(BeZero())
	}, SpecTimeout(20*time.Second))

	It("fails a waiting read with the deadline error once the read deadline passes, returning the buffer", func(ctx SpecContext) {
		server, _ := pair()
		pool := &countingPool{}
		Expect(server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))).To(Succeed())
		var r result
		Eventually(read(server, pool)).WithContext(ctx).Should(Receive(&r))
		Expect(errors.Is(r.err, os.ErrDeadlineExceeded)).To(BeTrue(), "got %v", r.err)
		Expect(r.buf).To(BeNil())
		Expect(pool.held()).To(BeZero())
	}, SpecTimeout(20*time.Second))
})

// mustDefaults is withDefaults for limits known to be valid.
func (l H2Limits) mustDefaults() H2Limits {
	l, err := l.withDefaults()
	Expect(err).NotTo(HaveOccurred())
	return l
}
