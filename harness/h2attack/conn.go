package h2attack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Per-connection memory: one write buffer, one read frame (the server may
// send frames of at most our default SETTINGS_MAX_FRAME_SIZE, 16 KiB), and
// header lists of at most maxReadHeaderList decoded bytes.
const (
	writeBufferSize   = 32 << 10
	maxReadHeaderList = 64 << 10
	// maxWindow is the largest flow-control window (2^31-1).
	maxWindow = 1<<31 - 1
	// flushEvery: an unpaced loop flushes at least every this many frames.
	flushEvery = 64
	// resetReportEvery: RST_STREAM counts are reported at most this often
	// per connection.
	resetReportEvery = time.Second
)

// conn is one attacking HTTP/2 connection. The attack loop owns the
// encoder and stream ids; wmu guards the write side (bw and the Framer's
// writes), which the read loop also uses for SETTINGS and PING acks and
// window grants. The read loop owns the Framer's read side and closes done
// when it ends; mu guards what it records for the result.
type conn struct {
	idx   int
	run   *attackRun
	nc    net.Conn
	bw    *bufio.Writer
	fr    *http2.Framer
	hbuf  bytes.Buffer
	henc  *hpack.Encoder
	next  uint32 // next stream id (attack loop)
	maxFr uint32 // the server's SETTINGS_MAX_FRAME_SIZE

	wmu sync.Mutex
	// blockOpen (under wmu): the attack loop sent a HEADERS frame without
	// END_HEADERS and never ends the block. HTTP/2 (RFC 9113 §6.10) allows
	// nothing but its CONTINUATION frames on the connection then, so the
	// read loop's acks are held back (heldAcks counts them): an ack there
	// would be our protocol error, and the server's PROTOCOL_ERROR close
	// would be blamed on the attack's rule.
	blockOpen bool
	heldAcks  int64

	frames, streams atomic.Int64
	stopping        atomic.Bool // we are closing: read errors are ours
	answerPings     bool

	settingsC  chan struct{} // closed at the server's first SETTINGS
	done       chan struct{} // closed when the read loop ended
	maxStreams uint32        // written before settingsC closes
	hasMax     bool
	settings   string

	mu           sync.Mutex
	resets       map[http2.ErrCode]int64
	pendingRST   map[http2.ErrCode]int64
	lastRSTRep   time.Time
	statusEnds   map[string]int64
	pingAcks     int64
	settingsAcks int64
	goAway       *GoAwayInfo
	closed       *CloseInfo
	writeBlocked bool
}

// attackRun is what the connections of one attack share.
type attackRun struct {
	name     string
	start    time.Time
	deadline time.Time
	report   Report
	req      Request
	scheme   string
}

func (a *attackRun) since() time.Duration { return time.Since(a.start) }

func (a *attackRun) emit(o Observation) {
	if a.report == nil {
		return
	}
	o.Attack = a.name
	if o.After == 0 {
		o.After = a.since()
	}
	a.report(o)
}

// dialConn dials addr, writes the client preface and settings, starts the
// read loop and waits for the server's SETTINGS (within the dial timeout).
func dialConn(ctx context.Context, a *attackRun, idx int, addr string, t Target, settings []http2.Setting, grantWindow bool) (*conn, error) {
	timeout := t.DialTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nc net.Conn
	var err error
	d := &net.Dialer{}
	if t.TLS != nil {
		cfg := t.TLS.Clone()
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = []string{http2.NextProtoTLS}
		}
		td := &tls.Dialer{NetDialer: d, Config: cfg}
		nc, err = td.DialContext(dctx, "tcp", addr)
		if err == nil {
			if p := nc.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
				_ = nc.Close()
				return nil, fmt.Errorf("connection %d to %s: TLS negotiated protocol %q, not h2", idx, addr, p)
			}
		}
	} else {
		nc, err = d.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("connection %d: dial %s: %w", idx, addr, err)
	}
	c := &conn{idx: idx, run: a, nc: nc, next: 1, maxFr: 16384, answerPings: true,
		settingsC: make(chan struct{}), done: make(chan struct{}),
		resets: map[http2.ErrCode]int64{}, pendingRST: map[http2.ErrCode]int64{}, statusEnds: map[string]int64{}}
	c.bw = bufio.NewWriterSize(nc, writeBufferSize)
	c.fr = http2.NewFramer(c.bw, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = maxReadHeaderList
	c.henc = hpack.NewEncoder(&c.hbuf)
	// Writes never outlive the attack's time bound: one the server does
	// not read by then fails with a timeout (WriteBlocked).
	_ = nc.SetWriteDeadline(a.deadline.Add(time.Second))

	if grantWindow {
		// The largest windows up front, on every stream and the
		// connection: nothing the server sends ever waits for a grant,
		// and no WINDOW_UPDATE is owed later (a client that granted per
		// DATA frame would flood control frames of its own).
		settings = append([]http2.Setting{{ID: http2.SettingInitialWindowSize, Val: maxWindow}}, settings...)
	}
	c.wmu.Lock()
	_, err = io.WriteString(c.bw, http2.ClientPreface)
	if err == nil {
		err = c.fr.WriteSettings(settings...)
	}
	if err == nil && grantWindow {
		err = c.fr.WriteWindowUpdate(0, maxWindow-65535)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("connection %d to %s: writing the HTTP/2 preface: %w", idx, addr, err)
	}
	go c.readLoop()
	t0 := time.Now()
	select {
	case <-c.settingsC:
	case <-c.done:
		c.stopping.Store(true)
		_ = nc.Close()
		return nil, fmt.Errorf("connection %d to %s: closed before the server's SETTINGS (not an HTTP/2 server?)", idx, addr)
	case <-dctx.Done():
		c.stopping.Store(true)
		_ = nc.Close()
		<-c.done
		return nil, fmt.Errorf("connection %d to %s: no SETTINGS from the server within %s", idx, addr, time.Since(t0).Round(time.Millisecond))
	}
	return c, nil
}

// close ends the connection from our side and waits for the read loop.
func (c *conn) close() {
	c.stopping.Store(true)
	_ = c.nc.Close()
	<-c.done
	c.flushResets(true)
}

// ended reports whether the read loop has ended (the server closed).
func (c *conn) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// send runs write (Framer writes of n frames) under the write lock,
// without flushing.
func (c *conn) send(n int, write func(fr *http2.Framer) error) error {
	c.wmu.Lock()
	err := write(c.fr)
	c.wmu.Unlock()
	if err != nil {
		return c.writeErr(err)
	}
	c.frames.Add(int64(n))
	return nil
}

// flush writes what is buffered.
func (c *conn) flush() error {
	c.wmu.Lock()
	err := c.bw.Flush()
	c.wmu.Unlock()
	if err != nil {
		return c.writeErr(err)
	}
	return nil
}

// errWriteBlocked: the server stopped reading; errConnEnded: it closed.
var (
	errWriteBlocked = errors.New("the server stopped reading: a write did not complete within the attack's time bound")
	errConnEnded    = errors.New("the connection ended")
)

// writeErr classifies a write error: a timeout is the server no longer
// reading (reported once), anything else the connection's end.
func (c *conn) writeErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.mu.Lock()
		first := !c.writeBlocked
		c.writeBlocked = true
		c.mu.Unlock()
		if first {
			c.run.emit(Observation{Kind: WriteBlocked, Conn: c.idx, Frames: c.frames.Load(), Detail: errWriteBlocked.Error()})
		}
		return errWriteBlocked
	}
	return fmt.Errorf("%w: %v", errConnEnded, err)
}

// newStream returns the next client stream id; false when the id space
// is used up.
func (c *conn) newStream() (uint32, bool) {
	id := c.next
	if id > 1<<31-1 {
		return 0, false
	}
	c.next += 2
	c.streams.Add(1)
	return id, true
}

// requestBlock encodes the request's header fields (plus extra) and
// returns the block; valid until the next call. Sensitive fields are
// encoded as never-indexed literals: they leave the dynamic table alone.
func (c *conn) requestBlock(sensitive bool, extra ...hpack.HeaderField) []byte {
	c.hbuf.Reset()
	r := c.run.req
	w := func(name, value string) {
		_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: value, Sensitive: sensitive})
	}
	w(":method", "POST")
	w(":scheme", c.run.scheme)
	w(":path", r.Path)
	w(":authority", r.Authority)
	w("content-type", "application/grpc")
	w("te", "trailers")
	for _, kv := range r.Metadata {
		w(kv[0], kv[1])
	}
	for _, f := range extra {
		_ = c.henc.WriteField(f)
	}
	return c.hbuf.Bytes()
}

// openStream sends a request's HEADERS (and its messages when withBody)
// on a new stream, leaving it open; 0 when the id space is used up.
func (c *conn) openStream(withBody bool) (uint32, error) {
	id, ok := c.newStream()
	if !ok {
		return 0, errIDsExhausted
	}
	block := c.requestBlock(false)
	n := 1
	err := c.send(0, func(fr *http2.Framer) error {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true}); err != nil {
			return err
		}
		if !withBody {
			return nil
		}
		for _, m := range c.run.req.Messages {
			msg := make([]byte, 5+len(m))
			binary.BigEndian.PutUint32(msg[1:5], uint32(len(m)))
			copy(msg[5:], m)
			for len(msg) > 0 {
				k := min(len(msg), int(c.maxFr))
				if err := fr.WriteData(id, false, msg[:k]); err != nil {
					return err
				}
				msg = msg[k:]
				n++
			}
		}
		return nil
	})
	c.frames.Add(int64(n))
	return id, err
}

var errIDsExhausted = errors.New("stream ids used up on this connection")

// readLoop reads every frame the server sends, records what it means and
// drops it. It answers the server's SETTINGS and PINGs (unless
// answerPings is off); window is granted once, up front (dialConn). It
// ends when the connection does; then done is closed.
func (c *conn) readLoop() {
	defer close(c.done)
	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				continue // a bad frame of one stream; the connection goes on
			}
			if !c.stopping.Load() {
				ci := &CloseInfo{Conn: c.idx, Frames: c.frames.Load(), After: c.run.since(), Reason: readErrText(err)}
				c.mu.Lock()
				c.closed = ci
				c.mu.Unlock()
				c.run.emit(Observation{Kind: Closed, Conn: c.idx, Frames: ci.Frames, After: ci.After,
					Detail: fmt.Sprintf("the server closed the connection after %d frames (%s)", ci.Frames, ci.Reason)})
			}
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				c.mu.Lock()
				c.settingsAcks++
				c.mu.Unlock()
				continue
			}
			if first {
				c.maxStreams, c.hasMax = f.Value(http2.SettingMaxConcurrentStreams)
				if v, ok := f.Value(http2.SettingMaxFrameSize); ok {
					c.maxFr = v
				}
				c.settings = settingsText(f)
				first = false
				// Acked before dialConn returns, so that the ack is
				// on the wire before any attack frame.
				c.ack(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
				close(c.settingsC)
				continue
			}
			c.ack(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
		case *http2.PingFrame:
			if f.IsAck() {
				c.mu.Lock()
				c.pingAcks++
				c.mu.Unlock()
				continue
			}
			if c.answerPings {
				data := f.Data
				c.ack(func(fr *http2.Framer) error { return fr.WritePing(true, data) })
			}
		case *http2.GoAwayFrame:
			g := &GoAwayInfo{Conn: c.idx, Code: f.ErrCode, Debug: truncate(string(f.DebugData()), 256),
				LastStreamID: f.LastStreamID, Frames: c.frames.Load(), After: c.run.since()}
			c.mu.Lock()
			firstGA := c.goAway == nil
			if firstGA {
				c.goAway = g
			}
			c.mu.Unlock()
			if firstGA {
				c.run.emit(Observation{Kind: GoAway, Conn: c.idx, Frames: g.Frames, After: g.After, Code: g.Code, Debug: g.Debug,
					Detail: fmt.Sprintf("GOAWAY %s %q (last stream %d) after %d frames", g.Code, g.Debug, g.LastStreamID, g.Frames)})
			}
		case *http2.RSTStreamFrame:
			c.mu.Lock()
			c.resets[f.ErrCode]++
			c.pendingRST[f.ErrCode]++
			c.mu.Unlock()
			c.flushResets(false)
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s == "" || f.StreamEnded() {
				for _, hf := range f.RegularFields() {
					if hf.Name == "grpc-status" {
						c.mu.Lock()
						if len(c.statusEnds) < 32 {
							c.statusEnds[hf.Value]++
						} else {
							c.statusEnds["other"]++
						}
						c.mu.Unlock()
					}
				}
			}
		}
	}
}

// ack writes and flushes a frame of the read loop's (not counted as an
// attack frame), unless a header block is open (blockOpen): then it is
// held back for good. Errors surface in the attack loop's next write.
func (c *conn) ack(write func(fr *http2.Framer) error) {
	c.wmu.Lock()
	if c.blockOpen {
		c.heldAcks++
	} else if err := write(c.fr); err == nil {
		_ = c.bw.Flush()
	}
	c.wmu.Unlock()
}

// flushResets reports the RST_STREAM counts since the last report, at
// most once per resetReportEvery unless final.
func (c *conn) flushResets(final bool) {
	c.mu.Lock()
	if len(c.pendingRST) == 0 || (!final && time.Since(c.lastRSTRep) < resetReportEvery) {
		c.mu.Unlock()
		return
	}
	pend := c.pendingRST
	c.pendingRST = map[http2.ErrCode]int64{}
	c.lastRSTRep = time.Now()
	c.mu.Unlock()
	for code, n := range pend {
		c.run.emit(Observation{Kind: Resets, Conn: c.idx, Frames: c.frames.Load(), Code: code, Count: n,
			Detail: fmt.Sprintf("%d RST_STREAM %s", n, code)})
	}
}

func settingsText(f *http2.SettingsFrame) string {
	var parts []string
	_ = f.ForeachSetting(func(s http2.Setting) error {
		parts = append(parts, s.String())
		return nil
	})
	if len(parts) == 0 {
		return "(defaults)"
	}
	return strings.Join(parts, ", ")
}

func readErrText(err error) string {
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	return truncate(err.Error(), 200)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
