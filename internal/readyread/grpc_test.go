package readyread_test

import (
	"context"
	"net"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"

	"github.com/bidikit/bidikit/internal/readyread"
)

// probeConn is a client connection wrapper, like the harness's, that
// records what grpc-go's reader does with it: calls of ReadOnReady, buffers
// taken from grpc-go's pool, and whether the call waiting now has taken one.
// Fields after mu are guarded by it.
type probeConn struct {
	net.Conn
	rr readyread.Reader

	mu      sync.Mutex
	calls   int  // ReadOnReady calls begun
	waiting bool // a call is under way
	held    bool // the call under way holds a pool buffer
	bytes   int  // bytes read
}

func (p *probeConn) ReadOnReady(size int, pool mem.BufferPool) (*[]byte, int, error) {
	p.mu.Lock()
	p.calls++
	p.waiting, p.held = true, false
	p.mu.Unlock()
	buf, n, err := readyread.Read(p.Conn, &p.rr, size, &probePool{BufferPool: pool, p: p})
	p.mu.Lock()
	p.waiting, p.held = false, false
	p.bytes += n
	p.mu.Unlock()
	return buf, n, err
}

// idleRead reports a ReadOnReady call waiting without a buffer, and how many
// calls there were.
func (p *probeConn) idleRead() (bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting && !p.held, p.calls
}

// probePool marks its probeConn's current call as holding a buffer while it
// has one.
type probePool struct {
	mem.BufferPool
	p *probeConn
}

func (pp *probePool) Get(n int) *[]byte {
	pp.p.mu.Lock()
	pp.p.held = true
	pp.p.mu.Unlock()
	return pp.BufferPool.Get(n)
}

func (pp *probePool) Put(b *[]byte) {
	pp.p.mu.Lock()
	pp.p.held = false
	pp.p.mu.Unlock()
	pp.BufferPool.Put(b)
}

var _ = Describe("grpc-go's client transport over a wrapped connection", func() {
	It("reads through ReadOnReady, holding no buffer while the connection is idle", func(ctx SpecContext) {
		baseline := gleak.Goroutines()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		go func() { _ = gs.Serve(lis) }()
		DeferCleanup(gs.Stop)

		probes := make(chan *probeConn, 10)
		cc, err := grpc.NewClient(lis.Addr().String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithReadBufferSize(8<<10),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				var d net.Dialer
				nc, err := d.DialContext(ctx, "tcp", a)
				if err != nil {
					return nil, err
				}
				p := &probeConn{Conn: nc}
				select {
				case probes <- p:
				default:
				}
				return p, nil
			}))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			_ = cc.Close()
			gs.Stop()
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})

		client := healthpb.NewHealthClient(cc)
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.GetStatus()).To(Equal(healthpb.HealthCheckResponse_SERVING))

		var p *probeConn
		Expect(probes).To(Receive(&p))
		var idle bool
		var calls int
		Eventually(func() bool { idle, calls = p.idleRead(); return idle }).WithContext(ctx).
			Should(BeTrue(), "grpc-go's reader waits in ReadOnReady without a buffer")
		Expect(calls).To(BeNumerically(">", 1), "grpc-go read the server's frames through ReadOnReady")

		// The next answer arrives through the waiting call, intact.
		resp, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.GetStatus()).To(Equal(healthpb.HealthCheckResponse_SERVING))
		Eventually(func() int { _, c := p.idleRead(); return c }).WithContext(ctx).Should(BeNumerically(">", calls))
	}, SpecTimeout(30*time.Second))
})
