package broken

import (
	"math"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/bidikit/bidikit/internal/loopserve"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// StartH2Unprotected serves the corpus chat server with every HTTP/2
// protection lifted: the server the HTTP/2 attacks (harness/h2attack) are
// proven to bite. Its defects, each marked "// defect: H2..." below:
//
//   - H2Unlimited: grpc-go's limits lifted: no MAX_CONCURRENT_STREAMS (so
//     no bound on concurrent handlers either), a 1 GiB header list (what a
//     CONTINUATION flood or an HPACK bomb decodes is kept), and keepalive
//     enforcement that allows a ping every nanosecond (no too_many_pings).
//   - H2FrameLog: every connection keeps a record (frameLogRecord bytes)
//     of every frame it read, for as long as it lives — the per-frame
//     buffering the 2019 flood CVEs exploited (queued PING and SETTINGS
//     acks, queued resets).
//   - BlockingBroadcast (the chat defect): a broadcast writes to every
//     member under the room's lock, so one member that grants no
//     flow-control window (zero-window) stalls its room.
//
// Like the rest of the corpus it listens on free loopback ports and serves
// health and channelz; its admin endpoint serves /metrics (Go and process
// collectors: what server-bounded samples), /debug/pprof/ and /healthz.
func StartH2Unprotected() (*Server, error) {
	s := &chatServer{defect: BlockingBroadcast, stop: make(chan struct{}), rooms: map[string]*room{}, limits: map[string]*rate.Limiter{}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return loopserve.Serve(loopserve.Options{What: "broken h2-unprotected server", WaitForHandlers: true,
		Server: []grpc.ServerOption{grpc.MaxRecvMsgSize(maxRecvMsgSize),
			grpc.MaxConcurrentStreams(math.MaxUint32), // defect: H2Unlimited
			grpc.MaxHeaderListSize(1 << 30),           // defect: H2Unlimited
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Nanosecond, PermitWithoutStream: true})}, // defect: H2Unlimited
		Listener: func(l net.Listener) net.Listener { return &frameLogListener{Listener: l} },
		Admin:    func(mux *http.ServeMux) { mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})) },
	}, func(gs *grpc.Server) func() {
		chatv1.RegisterChatServiceServer(gs, s)
		return func() { close(s.stop) }
	})
}

// frameLogRecord is the bytes the frame log keeps per frame.
const frameLogRecord = 4 << 10

// frameLogListener gives every accepted connection a frame log.
type frameLogListener struct{ net.Listener }

func (l *frameLogListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &frameLogConn{Conn: c, preface: 24}, nil
}

// frameLogConn records every frame grpc-go reads from it (its reader
// goroutine owns the fields) until the connection is dropped.
type frameLogConn struct {
	net.Conn
	preface int     // client preface bytes still to skip
	hdr     [9]byte // a frame header being read
	hdrN    int
	skip    int
	log     [][]byte // defect: H2FrameLog (one record per frame, never trimmed)
}

func (c *frameLogConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	b := p[:n]
	for len(b) > 0 {
		switch {
		case c.preface > 0:
			k := min(c.preface, len(b))
			c.preface -= k
			b = b[k:]
		case c.skip > 0:
			k := min(c.skip, len(b))
			c.skip -= k
			b = b[k:]
		default:
			k := copy(c.hdr[c.hdrN:], b)
			c.hdrN += k
			b = b[k:]
			if c.hdrN == 9 {
				c.hdrN = 0
				c.skip = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
				rec := make([]byte, frameLogRecord)
				copy(rec, c.hdr[:])
				c.log = append(c.log, rec) // defect: H2FrameLog
			}
		}
	}
	return n, err
}
