package readyread

import (
	"io"
	"net"
	"syscall"

	"google.golang.org/grpc/mem"
)

// ReadyReader is grpc-go's optional connection interface for reads that pin
// no memory while they wait (google.golang.org/grpc/internal/transport/
// readyreader.Reader, matched by its method). Callers handle the n > 0
// bytes before err.
type ReadyReader interface {
	ReadOnReady(bufSize int, pool mem.BufferPool) (buf *[]byte, n int, err error)
}

// Reader is one connection's state for Read: its raw descriptor, looked up
// on first use, and one call's request and result, kept here so that the
// callback is allocated once per connection, not per read. It is owned by
// the connection's single reader (grpc-go's reader goroutine); the zero
// value is ready to use.
type Reader struct {
	tried bool            // raw was looked up
	raw   syscall.RawConn // nil: the connection has no descriptor to read
	fn    func(fd uintptr) bool

	bufSize int
	pool    mem.BufferPool
	buf     *[]byte
	n       int
	err     error
}

// Read reads c into a buffer of bufSize from pool, taken once c is
// readable. A connection that is itself a ReadyReader reads its own way; a
// TCP or Unix connection through its descriptor (state in r); anything else
// blocks in Read holding a pool buffer, as bufio would. When n is 0 the
// buffer is nil; a peer's FIN is io.EOF, a passed deadline or a closed
// connection the net package's error.
func Read(c net.Conn, r *Reader, bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	if rr, ok := c.(ReadyReader); ok {
		return rr.ReadOnReady(bufSize, pool)
	}
	if !r.tried {
		r.tried = true
		r.lookup(c)
	}
	if r.raw == nil {
		buf := pool.Get(bufSize)
		n, err := c.Read(*buf)
		if n == 0 {
			pool.Put(buf)
			return nil, 0, err
		}
		return buf, n, err
	}
	r.bufSize, r.pool = bufSize, pool
	err := r.raw.Read(r.fn)
	buf, n, rerr := r.buf, r.n, r.err
	r.buf, r.pool, r.err = nil, nil, nil
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

// lookup sets r.raw for connections whose descriptor carries the bytes
// grpc-go reads as they are (not a TLS wrapper's ciphertext).
func (r *Reader) lookup(c net.Conn) {
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
	r.raw = raw
	r.fn = func(fd uintptr) bool {
		r.buf = r.pool.Get(r.bufSize)
		r.n, r.err = sysRead(fd, *r.buf)
		if r.err != nil {
			r.pool.Put(r.buf)
			r.buf = nil
		}
		return !wouldBlock(r.err) // false: wait until readable, then call again
	}
}
