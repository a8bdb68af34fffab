// Package readyread lets a net.Conn wrapper keep grpc-go's reads that pin no
// memory while a connection is idle.
//
// grpc-go (1.85) reads each HTTP/2 connection, client and server side alike,
// through a buffered reader (internal/transport.newFramer). When the
// connection implements the optional method
//
//	ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error)
//
// (grpc-go's internal/transport/readyreader.Reader, matched by its method),
// grpc-go waits until bytes have arrived, takes a read buffer from its pool
// only then, and gives it back once the bytes are parsed. grpc-go provides
// that itself for a bare *net.TCPConn or *net.UnixConn; a wrapper that
// embeds net.Conn (to count, close or judge a connection) hides it, and then
// every idle connection pins a whole ReadBufferSize bufio buffer while it
// waits: 8 KiB per connection with an 8 KiB read buffer, ~80 MB for 10,000
// idle connections.
//
// A wrapper keeps a Reader per connection and implements the method with Read:
//
//	type wrapped struct {
//		net.Conn
//		rr readyread.Reader // used by grpc-go's reader goroutine only
//	}
//
//	func (w *wrapped) ReadOnReady(n int, p mem.BufferPool) (*[]byte, int, error) {
//		return readyread.Read(w.Conn, &w.rr, n, p)
//	}
//
// Read asks the wrapped connection itself when it is a ReadyReader, reads a
// TCP or Unix connection's descriptor once it is readable (Unix only), and
// otherwise falls back to a blocking Read into a pool buffer (what bufio
// would pin anyway).
package readyread
