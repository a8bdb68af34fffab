package reference

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/mem"

	"github.com/bidikit/bidikit/internal/readyread"
)

// limitListener caps the number of open connections. Unlike
// netutil.LimitListener it never makes Accept wait: a connection over the
// limit is closed at once and counted, so a connection flood cannot queue up
// in the kernel's backlog while honest clients time out.
type limitListener struct {
	net.Listener
	max     int64
	open    atomic.Int64 // connections accepted and not yet closed
	refused prometheus.Counter
	gauge   prometheus.Gauge
}

func newLimitListener(l net.Listener, max int, refused prometheus.Counter, gauge prometheus.Gauge) *limitListener {
	return &limitListener{Listener: l, max: int64(max), refused: refused, gauge: gauge}
}

// Accept returns the next connection within the limit. It blocks like the
// wrapped listener's Accept, closing over-limit connections as they arrive.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Inc()
			_ = c.Close()
			continue
		}
		l.gauge.Inc()
		return &countedConn{Conn: c, l: l}, nil
	}
}

// countedConn gives its slot back on the first Close. Its reads pin no
// buffer while they wait (ReadOnReady, internal/readyread).
type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
	rr   readyread.Reader // owned by grpc-go's reader goroutine
}

var _ readyread.ReadyReader = (*countedConn)(nil)

// ReadOnReady reads for grpc-go into a pool buffer taken once bytes are
// there (readyread.ReadyReader).
func (c *countedConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	return readyread.Read(c.Conn, &c.rr, bufSize, pool)
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.gauge.Dec()
	})
	return err
}
