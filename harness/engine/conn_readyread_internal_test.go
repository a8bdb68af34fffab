package engine

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// heldPool is a mem.BufferPool that counts the buffers it lent and has not
// got back.
type heldPool struct{ n, puts atomic.Int64 }

func (p *heldPool) Get(n int) *[]byte { p.n.Add(1); b := make([]byte, n); return &b }
func (p *heldPool) Put(*[]byte)       { p.n.Add(-1); p.puts.Add(1) }

// readResult is one ReadOnReady call's return.
type readResult struct {
	buf *[]byte
	n   int
	err error
}

// readOnReadyAsync runs one ReadOnReady on t in its own goroutine.
func readOnReadyAsync(t *trackedConn, pool *heldPool) <-chan readResult {
	out := make(chan readResult, 1)
	go func() {
		buf, n, err := t.ReadOnReady(4096, pool)
		out <- readResult{buf, n, err}
	}()
	return out
}

// trackedPair is a loopback TCP connection: the dialled side as the
// dialer wraps it (tracked in c's live list), and the accepted side.
func trackedPair(c *conn) (*trackedConn, net.Conn) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(lis.Close)
	nc, err := net.Dial("tcp", lis.Addr().String())
	Expect(err).NotTo(HaveOccurred())
	t := &trackedConn{Conn: nc, c: c, target: lis.Addr().String()}
	c.live = append(c.live, t)
	DeferCleanup(func() { _ = t.Close() })
	peer, err := lis.Accept()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = peer.Close() })
	return t, peer
}

// readerWaitsInTrackedConn reports whether some goroutine (grpc-go's
// reader) is inside trackedConn.ReadOnReady.
func readerWaitsInTrackedConn() bool {
	for _, g := range gleak.Goroutines() {
		if strings.Contains(g.Backtrace, "(*trackedConn).ReadOnReady") {
			return true
		}
	}
	return false
}

var _ = Describe("client connections (trackedConn) read without pinning a buffer", func() {
	It("hold no buffer while idle, deliver bytes intact, and end with EOF on the peer's close", func(ctx SpecContext) {
		t, peer := trackedPair(&conn{})
		pool := &heldPool{}
		first := readOnReadyAsync(t, pool)
		// A read tries once before it waits (a Get and a Put): what is
		// judged is what is held once it waits.
		Eventually(pool.puts.Load).WithContext(ctx).Should(BeNumerically(">=", 1), "the read's first try")
		Consistently(pool.n.Load).WithTimeout(300*time.Millisecond).Should(BeZero(), "an idle connection holds no read buffer")

		want := strings.Repeat("0123456789abcdef", 2048) // 32 KiB: several reads
		go func() { _, _ = peer.Write([]byte(want)); _ = peer.Close() }()
		var got strings.Builder
		var r readResult
		Eventually(first).WithContext(ctx).Should(Receive(&r))
		for i := 0; i < 10_000 && r.err == nil; i++ {
			Expect(r.n).To(BeNumerically(">", 0))
			got.Write((*r.buf)[:r.n])
			pool.Put(r.buf)
			Eventually(readOnReadyAsync(t, pool)).WithContext(ctx).Should(Receive(&r))
		}
		Expect(r.err).To(MatchError(io.EOF))
		Expect(r.buf).To(BeNil())
		Expect(got.String()).To(Equal(want))
		Expect(pool.n.Load()).To(BeZero())
	}, SpecTimeout(20*time.Second))

	It("fail a waiting read with the deadline error", func(ctx SpecContext) {
		t, _ := trackedPair(&conn{})
		pool := &heldPool{}
		Expect(t.SetReadDeadline(time.Now().Add(50 * time.Millisecond))).To(Succeed())
		var r readResult
		Eventually(readOnReadyAsync(t, pool)).WithContext(ctx).Should(Receive(&r))
		Expect(errors.Is(r.err, os.ErrDeadlineExceeded)).To(BeTrue(), "got %v", r.err)
		Expect(pool.n.Load()).To(BeZero())
	}, SpecTimeout(20*time.Second))

	It("end a waiting read when the abrupt-close fault resets the connection, which leaves the live list", func(ctx SpecContext) {
		c := &conn{}
		t, peer := trackedPair(c)
		pool := &heldPool{}
		waiting := readOnReadyAsync(t, pool)
		Consistently(waiting).WithTimeout(100 * time.Millisecond).ShouldNot(Receive())
		c.closeRaw()
		var r readResult
		Eventually(waiting).WithContext(ctx).Should(Receive(&r))
		Expect(errors.Is(r.err, net.ErrClosed)).To(BeTrue(), "got %v", r.err)
		Expect(pool.n.Load()).To(BeZero())
		Expect(c.target()).To(BeEmpty(), "the closed connection left the live list")
		_, err := peer.Read(make([]byte, 1))
		Expect(err).To(HaveOccurred(), "the peer saw the connection end")
		Expect(errors.Is(err, io.EOF)).To(BeFalse(), "a reset, not a FIN: got %v", err)
	}, SpecTimeout(20*time.Second))

	It("are read by grpc-go through ReadOnReady, and reconnect after an abrupt close", func(ctx SpecContext) {
		baseline := gleak.Goroutines()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		go func() { _ = gs.Serve(lis) }()
		DeferCleanup(gs.Stop)
		Eventually(readerWaitsInTrackedConn).WithContext(ctx).Should(BeFalse(), "no reader before the dial (earlier specs' connections gone)")

		c, err := dial([]string{lis.Addr().String()}, &options{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			_ = c.cc.Close()
			gs.Stop()
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
		client := healthpb.NewHealthClient(c.cc)
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.GetStatus()).To(Equal(healthpb.HealthCheckResponse_SERVING))
		Eventually(readerWaitsInTrackedConn).WithContext(ctx).Should(BeTrue(),
			"grpc-go's reader of the idle connection waits in trackedConn.ReadOnReady")

		c.closeRaw()
		Expect(c.target()).To(BeEmpty())
		Eventually(func() error {
			_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}).WithContext(ctx).Should(Succeed(), "a new connection replaces the reset one")
		Expect(c.target()).To(Equal(lis.Addr().String()))
		Eventually(readerWaitsInTrackedConn).WithContext(ctx).Should(BeTrue())
	}, SpecTimeout(30*time.Second))
})
