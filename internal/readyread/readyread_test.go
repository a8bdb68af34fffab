package readyread_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/mem"

	"github.com/bidikit/bidikit/internal/readyread"
)

// countingPool is a mem.BufferPool that counts what it lends.
type countingPool struct{ gets, puts atomic.Int64 }

// held is how many buffers are lent and not given back.
func (p *countingPool) held() int64 { return p.gets.Load() - p.puts.Load() }

func (p *countingPool) Get(n int) *[]byte { p.gets.Add(1); b := make([]byte, n); return &b }
func (p *countingPool) Put(*[]byte)       { p.puts.Add(1) }

// wrapped hides its connection's type, as a counting or tracking wrapper
// does, and reads through readyread.
type wrapped struct {
	net.Conn
	rr readyread.Reader
}

func (w *wrapped) ReadOnReady(n int, pool mem.BufferPool) (*[]byte, int, error) {
	return readyread.Read(w.Conn, &w.rr, n, pool)
}

// result is one ReadOnReady call's return.
type result struct {
	buf *[]byte
	n   int
	err error
}

// readAsync runs one ReadOnReady on c in its own goroutine.
func readAsync(c readyread.ReadyReader, size int, pool mem.BufferPool) <-chan result {
	out := make(chan result, 1)
	go func() {
		buf, n, err := c.ReadOnReady(size, pool)
		out <- result{buf, n, err}
	}()
	return out
}

// tcpPair is a loopback TCP connection: the accepted side, wrapped, and the
// dialled side.
func tcpPair() (*wrapped, net.Conn) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(lis.Close)
	client, err := net.Dial("tcp", lis.Addr().String())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = client.Close() })
	server, err := lis.Accept()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = server.Close() })
	return &wrapped{Conn: server}, client
}

var _ = Describe("Read over a loopback TCP connection", func() {
	It("takes a buffer only once bytes arrived, delivers them intact, and ends with EOF on the peer's close", func(ctx SpecContext) {
		server, client := tcpPair()
		pool := &countingPool{}
		first := readAsync(server, 4096, pool)
		// A read tries once before it waits (a Get and a Put), so what is
		// judged is what is held while it waits: after that first try.
		Eventually(pool.puts.Load).WithContext(ctx).Should(BeNumerically(">=", 1), "the read's first try")
		Consistently(pool.held).WithTimeout(300*time.Millisecond).Should(BeZero(), "an idle connection holds no read buffer")

		want := make([]byte, 100_000) // several reads' worth
		r := rand.New(rand.NewPCG(7, 8))
		for i := range want {
			want[i] = byte(r.Uint32())
		}
		go func() { _, _ = client.Write(want); _ = client.Close() }()

		var got bytes.Buffer
		var res result
		Eventually(first).WithContext(ctx).Should(Receive(&res))
		for i := 0; i < 10_000 && res.err == nil; i++ {
			Expect(res.n).To(BeNumerically(">", 0), "a read without error carries bytes")
			Expect(res.n).To(BeNumerically("<=", 4096))
			Expect(*res.buf).To(HaveLen(4096), "the buffer is bufSize long")
			got.Write((*res.buf)[:res.n])
			pool.Put(res.buf)
			Eventually(readAsync(server, 4096, pool)).WithContext(ctx).Should(Receive(&res))
		}
		Expect(res.err).To(MatchError(io.EOF))
		Expect(res.buf).To(BeNil())
		Expect(res.n).To(BeZero())
		Expect(got.Bytes()).To(Equal(want), "the bytes arrive intact and in order")
		Expect(pool.held()).To(BeZero(), "every buffer went back to the pool")
	}, SpecTimeout(20*time.Second))

	It("fails a waiting read with the deadline error once the read deadline passes, holding no buffer", func(ctx SpecContext) {
		server, _ := tcpPair()
		pool := &countingPool{}
		Expect(server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))).To(Succeed())
		var res result
		Eventually(readAsync(server, 4096, pool)).WithContext(ctx).Should(Receive(&res))
		Expect(errors.Is(res.err, os.ErrDeadlineExceeded)).To(BeTrue(), "got %v", res.err)
		Expect(res.buf).To(BeNil())
		Expect(pool.held()).To(BeZero())
	}, SpecTimeout(20*time.Second))

	It("fails a waiting read when its own side is closed, holding no buffer", func(ctx SpecContext) {
		server, _ := tcpPair()
		pool := &countingPool{}
		got := readAsync(server, 4096, pool)
		Expect(server.Close()).To(Succeed())
		var res result
		Eventually(got).WithContext(ctx).Should(Receive(&res))
		Expect(errors.Is(res.err, net.ErrClosed)).To(BeTrue(), "got %v", res.err)
		Expect(res.buf).To(BeNil())
		Expect(pool.held()).To(BeZero())
	}, SpecTimeout(20*time.Second))
})

// selfReader is a connection that reads its own way (a ReadyReader).
type selfReader struct {
	net.Conn
	calls atomic.Int64
}

func (s *selfReader) ReadOnReady(int, mem.BufferPool) (*[]byte, int, error) {
	s.calls.Add(1)
	b := []byte("own")
	return &b, 3, nil
}

var _ = Describe("Read over other connections", func() {
	It("asks a connection that is itself a ReadyReader", func() {
		inner := &selfReader{}
		var rr readyread.Reader
		buf, n, err := readyread.Read(inner, &rr, 4096, &countingPool{})
		Expect(err).NotTo(HaveOccurred())
		Expect(string((*buf)[:n])).To(Equal("own"))
		Expect(inner.calls.Load()).To(BeEquivalentTo(1))
	})

	It("falls back to a blocking Read into a pool buffer for a connection without a descriptor", func(ctx SpecContext) {
		a, b := net.Pipe()
		DeferCleanup(func() { _ = a.Close(); _ = b.Close() })
		w := &wrapped{Conn: a}
		pool := &countingPool{}
		got := readAsync(w, 64, pool)
		go func() { _, _ = b.Write([]byte("piped")) }()
		var res result
		Eventually(got).WithContext(ctx).Should(Receive(&res))
		Expect(res.err).NotTo(HaveOccurred())
		Expect(string((*res.buf)[:res.n])).To(Equal("piped"))
		pool.Put(res.buf)

		Expect(b.Close()).To(Succeed())
		Eventually(readAsync(w, 64, pool)).WithContext(ctx).Should(Receive(&res))
		Expect(res.err).To(MatchError(io.EOF))
		Expect(res.buf).To(BeNil())
		Expect(pool.held()).To(BeZero())
	}, SpecTimeout(20*time.Second))
})
