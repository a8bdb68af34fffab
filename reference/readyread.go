package reference

import (
	"io"
	"net"
	"syscall"

	"google.golang.org/grpc/mem"
)

// readyReader is grpc-go's optional connection interface for reads that pin
// no memory while they wait (google.golang.org/grpc/internal/transport/
// readyreader.Reader, matched by its method): grpc-go takes a read buffer
// from its pool only once bytes have arrived, and gives it back once they
// are parsed. grpc-go uses it for a bare *net.TCPConn; the reference wraps
// its connections (countedConn, floodGuard), so they implement it too, or
// every idle connection would pin a whole ReadBufferSize buffer (bufio)
// while it waits — 8 KiB of the ~48 KiB an idle chat member cost before.
type readyReader interface {
	ReadOnReady(bufSize int, pool mem.BufferPool) (buf *[]byte, n int, err error)
}

var (
	_ readyReader = (*countedConn)(nil)
	_ readyReader = (*floodGuard)(nil)
)

// rawRead reads a connection's file descriptor when it is readable, into a
// buffer taken from the pool only then. One per connection, used by its
// reader goroutine only; its fields carry one call's request and result so
// that the callback is allocated once, not per read.
type rawRead struct {
	tried bool            // raw was looked up
	raw   syscall.RawConn // nil: the connection has no descriptor to read
	fn    func(fd uintptr) bool

	bufSize int
	pool    mem.BufferPool
	buf     *[]byte
	n       int
	err     error
}

// readOnReady reads c into a buffer of bufSize from pool, taken once c is
// readable. A connection that is itself a readyReader reads its own way; a
// TCP or Unix connection through its descriptor (state in rr); anything
// else blocks in Read holding a pool buffer, as bufio would. When n is 0 the
// buffer is nil.
func readOnReady(c net.Conn, rr *rawRead, bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	if r, ok := c.(readyReader); ok {
		return r.ReadOnReady(bufSize, pool)
	}
	if !rr.tried {
		rr.tried = true
		rr.lookup(c)
	}
	if rr.raw == nil {
		buf := pool.Get(bufSize)
		n, err := c.Read(*buf)
		if n == 0 {
			pool.Put(buf)
			return nil, 0, err
		}
		return buf, n, err
	}
	rr.bufSize, rr.pool = bufSize, pool
	err := rr.raw.Read(rr.fn)
	buf, n, rerr := rr.buf, rr.n, rr.err
	rr.buf, rr.pool, rr.err = nil, nil, nil
	switch {
	case err != nil: // closed, or a deadline passed
		if buf != nil {
			pool.Put(buf)
		}
		return nil, 0, err
	case rerr != nil: // the callback gave the buffer back
		return nil, 0, rerr
	case n == 0: // a read of 0 bytes is the peer's FIN
		pool.Put(buf)
		return nil, 0, io.EOF
	}
	return buf, n, nil
}

// lookup sets rr.raw for connections whose descriptor carries the bytes
// grpc-go reads as they are (not a TLS wrapper's ciphertext).
func (rr *rawRead) lookup(c net.Conn) {
	if !rawReadSupported {
		return
	}
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return
	}
	rr.raw = raw
	rr.fn = func(fd uintptr) bool {
		rr.buf = rr.pool.Get(rr.bufSize)
		rr.n, rr.err = sysRead(fd, *rr.buf)
		if rr.err != nil {
			rr.pool.Put(rr.buf)
			rr.buf = nil
		}
		return !wouldBlock(rr.err) // false: wait until readable, then call again
	}
}
