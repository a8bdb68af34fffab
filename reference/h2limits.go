package reference

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"golang.org/x/net/http2"
	"google.golang.org/grpc/mem"

	"github.com/bidikit/bidikit/internal/readyread"
	"github.com/bidikit/bidikit/reference/validate"
)

// Defaults of H2Limits. A zero field of H2Limits means "use the default".
const (
	DefaultH2ControlFrameRate  = 1000
	DefaultH2ControlFrameBurst = 5000
	DefaultH2ResetRate         = 200
	DefaultH2ResetBurst        = 1000
	DefaultH2MaxEmptyFrames    = 16
	DefaultH2MinInitialWindow  = 1024
	DefaultH2FloodPenalty      = 5 * time.Second
)

// H2Limits bound what one client connection may send below gRPC, in
// HTTP/2 frames the server must process but that carry no request
// (grpc-go itself bounds concurrent streams, header list size and pings;
// these close the floods it absorbs one frame at a time). Each connection
// has a token bucket per budget; a connection over a budget is sent
// GOAWAY ENHANCE_YOUR_CALM naming the rule, is no longer read for
// FloodPenalty (its further frames cost nothing), and is then closed.
// Counted in bidikit_h2_flood_closes_total{rule}.
type H2Limits struct {
	// Disable turns the guard off (grpc-go's own limits remain). Default false.
	Disable bool
	// ControlFrameRate and ControlFrameBurst: PING, SETTINGS,
	// WINDOW_UPDATE and PRIORITY frames per second per connection, and
	// the bucket's size. Defaults 1000/s, 5000. WINDOW_UPDATEs and PINGs
	// that answer the server's own DATA frames (up to repliesPerData per
	// frame written) are not counted: a busy client reading fast sends
	// thousands a second, and that work is bounded by what the server
	// chose to send.
	ControlFrameRate  float64
	ControlFrameBurst int
	// ResetRate and ResetBurst: RST_STREAM frames a client may send per
	// second per connection (rapid reset), and the bucket's size.
	// Defaults 200/s, 1000.
	ResetRate  float64
	ResetBurst int
	// MaxEmptyFrames: frames in a row that carry nothing (DATA without
	// payload or END_STREAM, HEADERS or CONTINUATION with an empty block
	// fragment and no END_HEADERS, or an empty header block). Default 16.
	MaxEmptyFrames int
	// MinInitialWindow: the least SETTINGS_INITIAL_WINDOW_SIZE a client
	// may announce while it opens streams. A client that opens a stream
	// with a smaller window lets the server send nothing on it while the
	// service queues what it owes the stream (zero-window, slowloris on
	// flow control); no gRPC client announces less than 64 KiB. It does
	// not catch a client that announces a normal window and then never
	// grants more: the services' per-stream queue bounds (slow consumer)
	// answer that one. Default 1024.
	MinInitialWindow uint32
	// FloodPenalty: how long a flooding connection stays unread after its
	// GOAWAY before it is closed; negative closes at once. Default 5s.
	FloodPenalty time.Duration
}

// withDefaults returns l with every zero field set to its default.
func (l H2Limits) withDefaults() (H2Limits, error) {
	if l.ControlFrameRate == 0 {
		l.ControlFrameRate = DefaultH2ControlFrameRate
	}
	if l.ControlFrameBurst == 0 {
		l.ControlFrameBurst = DefaultH2ControlFrameBurst
	}
	if l.ResetRate == 0 {
		l.ResetRate = DefaultH2ResetRate
	}
	if l.ResetBurst == 0 {
		l.ResetBurst = DefaultH2ResetBurst
	}
	if l.MaxEmptyFrames == 0 {
		l.MaxEmptyFrames = DefaultH2MaxEmptyFrames
	}
	if l.MinInitialWindow == 0 {
		l.MinInitialWindow = DefaultH2MinInitialWindow
	}
	if l.FloodPenalty == 0 {
		l.FloodPenalty = DefaultH2FloodPenalty
	}
	switch {
	case l.ControlFrameRate < 0:
		return l, validate.Settingf(h2Field+"ControlFrameRate", "is %v, want > 0", l.ControlFrameRate)
	case l.ControlFrameBurst < 1:
		return l, validate.Settingf(h2Field+"ControlFrameBurst", "is %d, want >= 1", l.ControlFrameBurst)
	case l.ResetRate < 0:
		return l, validate.Settingf(h2Field+"ResetRate", "is %v, want > 0", l.ResetRate)
	case l.ResetBurst < 1:
		return l, validate.Settingf(h2Field+"ResetBurst", "is %d, want >= 1", l.ResetBurst)
	case l.MaxEmptyFrames < 1:
		return l, validate.Settingf(h2Field+"MaxEmptyFrames", "is %d, want >= 1", l.MaxEmptyFrames)
	}
	return l, nil
}

// h2Field prefixes H2Limits' field names in errors: the path from Options
// (and Config.Options), which is where a program sets them.
const h2Field = "Options.H2Limits."

// h2FlagFields binds each flag RegisterFlags defines to its field
// (validate.BindFlag), so that errors name the flag on the command line.
var h2FlagFields = [][2]string{
	{"h2-no-flood-guard", h2Field + "Disable"},
	{"h2-control-frame-rate", h2Field + "ControlFrameRate"}, {"h2-control-frame-burst", h2Field + "ControlFrameBurst"},
	{"h2-reset-rate", h2Field + "ResetRate"}, {"h2-reset-burst", h2Field + "ResetBurst"},
	{"h2-max-empty-frames", h2Field + "MaxEmptyFrames"}, {"h2-min-initial-window", h2Field + "MinInitialWindow"},
	{"h2-flood-penalty", h2Field + "FloodPenalty"},
}

// RegisterFlags binds l to flags on fs, with the defaults as flag defaults,
// and records which field each flag sets (validate.BindFlag). Config's
// RegisterFlags calls it for Options.H2Limits.
func (l *H2Limits) RegisterFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&l.Disable, "h2-no-flood-guard", l.Disable, "turn off the HTTP/2 flood guard below (grpc-go's own limits stay: --max-concurrent-streams, --max-header-list-size, --keepalive-min-time); default off: the guard is on")
	fs.Float64Var(&l.ControlFrameRate, "h2-control-frame-rate", DefaultH2ControlFrameRate, "PING, SETTINGS, WINDOW_UPDATE and PRIORITY frames a connection may send per second (token bucket), beyond the window updates and pings that answer the server's own DATA frames (3 per frame); over it: GOAWAY ENHANCE_YOUR_CALM, then close (ping/settings/window-update floods)")
	fs.IntVar(&l.ControlFrameBurst, "h2-control-frame-burst", DefaultH2ControlFrameBurst, "bucket size of --h2-control-frame-rate")
	fs.Float64Var(&l.ResetRate, "h2-reset-rate", DefaultH2ResetRate, "RST_STREAM frames a connection may send per second (token bucket); over it: GOAWAY ENHANCE_YOUR_CALM, then close (rapid reset, CVE-2023-44487)")
	fs.IntVar(&l.ResetBurst, "h2-reset-burst", DefaultH2ResetBurst, "bucket size of --h2-reset-rate")
	fs.IntVar(&l.MaxEmptyFrames, "h2-max-empty-frames", DefaultH2MaxEmptyFrames, "frames in a row without payload (empty DATA, empty header block fragments) before GOAWAY ENHANCE_YOUR_CALM, then close (CVE-2019-9518, empty CONTINUATION floods)")
	fs.Uint32Var(&l.MinInitialWindow, "h2-min-initial-window", DefaultH2MinInitialWindow, "least SETTINGS_INITIAL_WINDOW_SIZE (bytes) a client may announce while it opens streams; a stream opened with less gets GOAWAY ENHANCE_YOUR_CALM, then close (zero-window slowloris; gRPC clients announce 64 KiB or more)")
	fs.DurationVar(&l.FloodPenalty, "h2-flood-penalty", DefaultH2FloodPenalty, "how long a connection over an HTTP/2 limit stays unread after its GOAWAY before it is closed (its further frames cost nothing; negative: close at once)")
	for _, ff := range h2FlagFields {
		validate.BindFlag(fs, ff[0], ff[1])
	}
}

// Flood rules, the label of bidikit_h2_flood_closes_total and the GOAWAY's
// debug data.
const (
	ruleControl = "control-frames"
	ruleReset   = "rst-stream"
	ruleEmpty   = "empty-frames"
	ruleWindow  = "zero-window"
)

// floodListener wraps accepted connections in a floodGuard.
type floodListener struct {
	net.Listener
	l      H2Limits
	closes *prometheus.CounterVec
}

func newFloodListener(inner net.Listener, l H2Limits, closes *prometheus.CounterVec) net.Listener {
	if l.Disable {
		return inner
	}
	return &floodListener{Listener: inner, l: l, closes: closes}
}

// Accept returns the next connection, guarded.
func (fl *floodListener) Accept() (net.Conn, error) {
	c, err := fl.Listener.Accept()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &floodGuard{Conn: c, l: fl.l, closes: fl.closes, closed: make(chan struct{}), window: 65535,
		control: bucket{tokens: float64(fl.l.ControlFrameBurst), last: now},
		resets:  bucket{tokens: float64(fl.l.ResetBurst), last: now}}, nil
}

// bucket is a token bucket refilled on use.
type bucket struct {
	tokens float64
	last   time.Time
}

// take spends one token at now; false when none is left.
func (b *bucket) take(now time.Time, rate float64, burst int) bool {
	b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*rate, float64(burst))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// floodGuard is one client connection as grpc-go sees it: it parses the
// frame headers of what grpc-go reads (its Read goroutine owns the read
// side's state), counts frames against the H2Limits budgets, and on a
// violation writes GOAWAY ENHANCE_YOUR_CALM between two of grpc-go's
// frames (wmu guards the write side and its frame tracking), keeps the
// connection unread for the penalty, then closes it and fails the read.
type floodGuard struct {
	net.Conn
	l      H2Limits
	closes *prometheus.CounterVec

	// read side (grpc-go's reader goroutine)
	preface  int     // client preface bytes still to skip (set on first Read)
	started  bool    // the preface count is set
	hdr      [9]byte // a frame header being read
	hdrN     int
	skip     int // payload bytes of the current frame still to pass
	control  bucket
	resets   bucket
	empty    int    // frames in a row without payload
	maxID    uint32 // highest client stream id seen
	violated string
	// settings collects a SETTINGS frame's payload (at most maxSettings
	// bytes of it) while it passes; window is the client's announced
	// SETTINGS_INITIAL_WINDOW_SIZE.
	settings   []byte
	inSettings bool
	window     uint32

	// replies counts the WINDOW_UPDATEs and PINGs let through on the
	// credit of dataOut (read side).
	replies int64
	// dataOut counts the non-empty DATA frames grpc-go wrote (write side
	// adds, read side loads).
	dataOut atomic.Int64

	// write side
	wmu    sync.Mutex
	outHdr int // bytes of the current outbound frame header written (0..9)
	outHd  [9]byte
	outRem int // payload bytes of the current outbound frame still to come

	once   sync.Once
	closed chan struct{}
	rr     readyread.Reader // read side: for ReadOnReady when Conn is not a ReadyReader
}

// Read reads for grpc-go, judging every frame header that passes.
func (g *floodGuard) Read(p []byte) (int, error) {
	if !g.started {
		g.started, g.preface = true, len(http2.ClientPreface)
	}
	if g.violated != "" {
		return 0, fmt.Errorf("connection closed by the HTTP/2 flood guard (%s)", g.violated)
	}
	n, err := g.Conn.Read(p)
	if rule := g.scan(p[:n], time.Now()); rule != "" {
		g.violated = rule
		g.punish(rule)
		return 0, fmt.Errorf("connection closed by the HTTP/2 flood guard (%s)", rule)
	}
	return n, err
}

var _ readyread.ReadyReader = (*floodGuard)(nil)

// ReadOnReady is Read for grpc-go's reads that pin no buffer while they
// wait (readyread.ReadyReader): the same judging, on the bytes read into a
// pool buffer taken once they arrived.
func (g *floodGuard) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	if !g.started {
		g.started, g.preface = true, len(http2.ClientPreface)
	}
	if g.violated != "" {
		return nil, 0, fmt.Errorf("connection closed by the HTTP/2 flood guard (%s)", g.violated)
	}
	buf, n, err := readyread.Read(g.Conn, &g.rr, bufSize, pool)
	if n == 0 {
		return buf, 0, err
	}
	if rule := g.scan((*buf)[:n], time.Now()); rule != "" {
		pool.Put(buf)
		g.violated = rule
		g.punish(rule)
		return nil, 0, fmt.Errorf("connection closed by the HTTP/2 flood guard (%s)", rule)
	}
	return buf, n, err
}

// scan walks b's frame headers; it returns the rule a frame broke, if any.
func (g *floodGuard) scan(b []byte, now time.Time) string {
	for len(b) > 0 {
		switch {
		case g.preface > 0:
			k := min(g.preface, len(b))
			g.preface -= k
			b = b[k:]
		case g.skip > 0:
			k := min(g.skip, len(b))
			if g.inSettings && len(g.settings) < maxSettings {
				g.settings = append(g.settings, b[:min(k, maxSettings-len(g.settings))]...)
			}
			g.skip -= k
			b = b[k:]
			if g.skip == 0 && g.inSettings {
				g.applySettings()
			}
		default:
			k := copy(g.hdr[g.hdrN:], b)
			g.hdrN += k
			b = b[k:]
			if g.hdrN < 9 {
				return ""
			}
			g.hdrN = 0
			if rule := g.judge(now); rule != "" {
				return rule
			}
			if g.inSettings && g.skip == 0 {
				g.applySettings() // an empty SETTINGS frame
			}
		}
	}
	return ""
}

// judge counts the frame whose header is in g.hdr.
func (g *floodGuard) judge(now time.Time) string {
	length := int(g.hdr[0])<<16 | int(g.hdr[1])<<8 | int(g.hdr[2])
	typ, flags := http2.FrameType(g.hdr[3]), http2.Flags(g.hdr[4])
	id := binary.BigEndian.Uint32(g.hdr[5:9]) & (1<<31 - 1)
	g.skip = length
	if id > g.maxID && id%2 == 1 {
		g.maxID = id
	}
	emptyFrame := false
	switch typ {
	case http2.FramePing, http2.FrameSettings, http2.FrameWindowUpdate, http2.FramePriority:
		if flags.Has(http2.FlagSettingsAck) && (typ == http2.FramePing || typ == http2.FrameSettings) {
			break // acks answer the server's own frames
		}
		if (typ == http2.FrameWindowUpdate || typ == http2.FramePing) && g.replyCredit() {
			break // answers the server's own DATA
		}
		if !g.control.take(now, g.l.ControlFrameRate, g.l.ControlFrameBurst) {
			return ruleControl
		}
		if typ == http2.FrameSettings && length > 0 {
			g.inSettings, g.settings = true, g.settings[:0]
		}
	case http2.FrameRSTStream:
		if !g.resets.take(now, g.l.ResetRate, g.l.ResetBurst) {
			return ruleReset
		}
	case http2.FrameData:
		emptyFrame = length == 0 && !flags.Has(http2.FlagDataEndStream)
	case http2.FrameHeaders:
		// Padding and priority fields make a few bytes of an empty block.
		emptyFrame = length == 0
		if g.window < g.l.MinInitialWindow {
			return ruleWindow
		}
	case http2.FrameContinuation:
		emptyFrame = length == 0 && !flags.Has(http2.FlagContinuationEndHeaders)
	}
	if emptyFrame {
		g.empty++
		if g.empty > g.l.MaxEmptyFrames {
			return ruleEmpty
		}
	} else if typ == http2.FrameData || typ == http2.FrameHeaders || typ == http2.FrameContinuation {
		g.empty = 0
	}
	return ""
}

// repliesPerData is how many WINDOW_UPDATE and PING frames a client may
// send per DATA frame the server wrote, outside the control-frame budget:
// grpc-go's client answers data it reads with a stream and a connection
// WINDOW_UPDATE and a BDP ping (one of each at most per frame read).
const repliesPerData = 3

// replyCredit spends one reply of the credit the server's DATA frames
// earned; false when there is none left.
func (g *floodGuard) replyCredit() bool {
	if g.replies >= g.dataOut.Load()*repliesPerData {
		return false
	}
	g.replies++
	return true
}

// maxSettings bounds the SETTINGS payload the guard reads (ten settings;
// a client repeating one setting more often gains nothing).
const maxSettings = 60

// applySettings takes SETTINGS_INITIAL_WINDOW_SIZE from the SETTINGS
// payload collected.
func (g *floodGuard) applySettings() {
	for b := g.settings; len(b) >= 6; b = b[6:] {
		if http2.SettingID(binary.BigEndian.Uint16(b[:2])) == http2.SettingInitialWindowSize {
			g.window = binary.BigEndian.Uint32(b[2:6])
		}
	}
	g.inSettings, g.settings = false, g.settings[:0]
}

// punish counts the close, sends GOAWAY ENHANCE_YOUR_CALM (when grpc-go's
// writes stand between two frames), waits out the penalty unread (ended
// early by Close), and closes the connection.
func (g *floodGuard) punish(rule string) {
	if g.closes != nil {
		g.closes.WithLabelValues(rule).Inc()
	}
	g.wmu.Lock()
	if g.outHdr == 0 && g.outRem == 0 {
		debug := []byte("bidikit: HTTP/2 flood: " + rule)
		f := make([]byte, 9+8+len(debug))
		n := 8 + len(debug)
		f[0], f[1], f[2] = byte(n>>16), byte(n>>8), byte(n)
		f[3] = byte(http2.FrameGoAway)
		binary.BigEndian.PutUint32(f[9:13], g.maxID)
		binary.BigEndian.PutUint32(f[13:17], uint32(http2.ErrCodeEnhanceYourCalm))
		copy(f[17:], debug)
		_ = g.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = g.Conn.Write(f)
		_ = g.Conn.SetWriteDeadline(time.Time{})
	}
	g.wmu.Unlock()
	if g.l.FloodPenalty > 0 {
		t := time.NewTimer(g.l.FloodPenalty)
		select {
		case <-t.C:
		case <-g.closed:
		}
		t.Stop()
	}
	_ = g.Close()
}

// Write writes for grpc-go and tracks its frame boundaries, so that a
// GOAWAY is never written inside one of its frames.
func (g *floodGuard) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	n, err := g.Conn.Write(p)
	b := p[:n]
	for len(b) > 0 {
		if g.outRem > 0 {
			k := min(g.outRem, len(b))
			g.outRem -= k
			b = b[k:]
			continue
		}
		k := copy(g.outHd[g.outHdr:], b)
		g.outHdr += k
		b = b[k:]
		if g.outHdr == 9 {
			g.outHdr = 0
			g.outRem = int(g.outHd[0])<<16 | int(g.outHd[1])<<8 | int(g.outHd[2])
			if http2.FrameType(g.outHd[3]) == http2.FrameData && g.outRem > 0 {
				g.dataOut.Add(1)
			}
		}
	}
	return n, err
}

// Close closes the connection once and ends a penalty wait.
func (g *floodGuard) Close() error {
	var err error
	g.once.Do(func() {
		close(g.closed)
		err = g.Conn.Close()
	})
	return err
}
