// Package h2attack runs denial-of-service attacks one layer below gRPC: raw
// HTTP/2 frames (golang.org/x/net/http2's Framer and hpack) written on TCP
// connections of their own (TLS optional, ALPN h2), next to whatever honest
// gRPC traffic a scenario runs. One file per attack:
//
//	rapid-reset          HEADERS then RST_STREAM, over and over (CVE-2023-44487)
//	continuation-flood   CONTINUATION frames that never end the header block (CVE-2024-27316 class)
//	ping-flood           PING frames, each owed an ACK (CVE-2019-9512)
//	settings-flood       SETTINGS frames, each owed an ACK (CVE-2019-9515)
//	empty-frames         zero-length DATA frames, or empty header blocks (CVE-2019-9518)
//	window-update-flood  WINDOW_UPDATE frames of increment 1 (control-frame flood class)
//	zero-window          streams whose window is 0 and never grows (slowloris on flow control, CVE-2019-9517 class)
//	stream-hold          the most concurrent streams the server allows, then silence
//	hpack-bomb           header blocks that decode to far more than their wire size (CVE-2016-6581 class)
//
// Every attack is bounded in count and in time (its Params' defaults, and the
// hard caps below whatever the caller asks), keeps bounded memory (counters,
// one fixed write buffer and the hpack tables per connection; everything the
// server sends is read and dropped), and refuses a target that is not a
// loopback address (127.0.0.0/8, ::1) unless Target.AllowRemote is set.
// What the server did — GOAWAY code and debug data, RST_STREAM counts by
// code, streams ended with a grpc-status, connections closed after how many
// frames and how long, writes the server stopped reading — is reported as
// Observations while the attack runs and summed up in its Result. Nothing
// here decides a verdict.
//
// Only attack servers you own, on loopback or your own network.
package h2attack

import (
	"context"
	"crypto/tls"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/http2"
)

// Hard caps: whatever the params say, an attack never exceeds these.
const (
	MaxConnections = 64
	MaxCount       = 10_000_000
	MaxDuration    = 10 * time.Minute
	// MaxRate is the most frames (or streams) per second per connection a
	// paced attack asks for; 0 in params means "as fast as the connection
	// takes them", still within MaxCount and the duration.
	MaxRate = 1_000_000
)

// Target is the server to attack.
type Target struct {
	// Addr is host:port. The host must be a loopback address (or a name
	// that resolves only to loopback addresses) unless AllowRemote is set.
	Addr string
	// TLS, when set, dials TLS with ALPN "h2" (NextProtos is set to h2
	// when empty); nil speaks HTTP/2 in cleartext with prior knowledge (h2c),
	// as gRPC does without TLS.
	TLS *tls.Config
	// AllowRemote permits a target that is not loopback. Only for servers
	// you own, on your own network.
	AllowRemote bool
	// DialTimeout bounds each connection's dial and HTTP/2 set-up
	// (preface, the server's SETTINGS); default 5s.
	DialTimeout time.Duration
}

// Request is what an attack's streams ask for: a gRPC method and metadata,
// and the messages some attacks send on each stream (zero-window,
// stream-hold: a Join, so that the server has something to answer).
type Request struct {
	// Path is the :path, e.g. "/bidikit.chat.v1.ChatService/Connect";
	// default "/grpc.health.v1.Health/Watch".
	Path string
	// Authority is the :authority; default the target's Addr.
	Authority string
	// Metadata are extra header fields (lower-case names), e.g.
	// {"authorization", "Bearer alice"}; pairs, in order.
	Metadata [][2]string
	// Messages are serialized protobuf messages, each sent as one
	// length-prefixed gRPC message in DATA frames after the HEADERS.
	Messages [][]byte
}

// ObservationKind says what an Observation records.
type ObservationKind string

const (
	// Started: the attack began (Detail: its parameters).
	Started ObservationKind = "start"
	// Connected: a connection's HTTP/2 set-up finished (Detail: the
	// server's SETTINGS).
	Connected ObservationKind = "connected"
	// GoAway: the server sent GOAWAY (Code, Debug, Frames, After).
	GoAway ObservationKind = "goaway"
	// Resets: RST_STREAM frames the server sent since the last report,
	// per code (Code, Count); reported at most once a second per code and
	// connection, and at the end.
	Resets ObservationKind = "rst"
	// Closed: the server closed the connection (Frames sent before, After
	// the attack's start, Detail: the read error).
	Closed ObservationKind = "closed"
	// WriteBlocked: the server stopped reading: a write did not complete
	// within the attack's time bound (Frames, After).
	WriteBlocked ObservationKind = "write-blocked"
	// Stopped: the attack ended (Detail: the Result's summary).
	Stopped ObservationKind = "stop"
)

// Observation is one thing the server did (or the attack did), reported
// while the attack runs. Conn is the connection's index (-1: the attack as
// a whole); After is the time since the attack started; Frames the frames
// that connection had sent by then.
type Observation struct {
	Attack string
	Kind   ObservationKind
	Conn   int
	After  time.Duration
	Frames int64
	Code   http2.ErrCode
	Debug  string
	Count  int64
	Detail string
}

// Report receives Observations. It is called from the attack's
// connection goroutines, possibly at once from several: it must be safe for
// concurrent use and must not block for long. nil drops them.
type Report func(Observation)

// GoAwayInfo is one GOAWAY a server sent.
type GoAwayInfo struct {
	Conn         int
	Code         http2.ErrCode
	Debug        string
	LastStreamID uint32
	// Frames the connection had sent when it arrived; After: since the
	// attack started.
	Frames int64
	After  time.Duration
}

// CloseInfo is one connection the server closed. Frames counts what the
// attack had written by then; unpaced, some of it may still have been in
// the socket buffers, unread by the server.
type CloseInfo struct {
	Conn   int
	Frames int64
	After  time.Duration
	Reason string
}

// Result sums up what an attack sent and what the server answered.
type Result struct {
	Attack string
	Target string
	// Connections that completed the HTTP/2 set-up, reconnections
	// included; Reconnects: how many of them replaced one the server
	// closed.
	Connections, Reconnects int
	// Frames and Streams sent over every connection.
	Frames  int64
	Streams int64
	// GoAways: at most one per connection (the first).
	GoAways []GoAwayInfo
	// Resets counts RST_STREAM frames by HTTP/2 error code name.
	Resets map[string]int64
	// StatusEnds counts streams the server ended with a grpc-status, by
	// its number ("8" is RESOURCE_EXHAUSTED).
	StatusEnds map[string]int64
	// PingAcks and SettingsAcks: acknowledgements the server sent.
	PingAcks, SettingsAcks int64
	// HeldAcks: acks to the server's SETTINGS or PINGs the attack did not
	// send because its header block was open (continuation-flood), where
	// HTTP/2 allows no other frame.
	HeldAcks int64
	// ClosedCount: connections the server closed; Closed lists the first
	// of them (at most 64), FirstClose is the earliest.
	ClosedCount int
	Closed      []CloseInfo
	FirstClose  *CloseInfo
	// WriteBlocked: connections whose writes the server stopped reading.
	WriteBlocked int
	// ServerMaxStreams is the SETTINGS_MAX_CONCURRENT_STREAMS the server
	// announced (0: none announced, i.e. unlimited).
	ServerMaxStreams uint32
	Elapsed          time.Duration
	// Stopped says why the attack ended: "count reached", "duration
	// reached", "the server closed the connection" (and reconnecting was
	// off, or failed), "stopped"; several reasons with their counts when
	// the connections differ.
	Stopped string
}

// Summary renders r on one line: what was sent, and how the server answered.
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d frames", r.Attack, r.Frames)
	if r.Streams > 0 {
		fmt.Fprintf(&b, ", %d streams", r.Streams)
	}
	fmt.Fprintf(&b, " on %d connection(s)", r.Connections)
	if r.Reconnects > 0 {
		fmt.Fprintf(&b, " (%d reconnects)", r.Reconnects)
	}
	fmt.Fprintf(&b, " in %s (%s)", r.Elapsed.Round(time.Millisecond), r.Stopped)
	if r.HeldAcks > 0 {
		// ours, not the server's: said before what the server did
		fmt.Fprintf(&b, "; %d of our acks held back inside the open header block", r.HeldAcks)
	}
	var ans []string
	for _, g := range r.GoAways {
		ans = append(ans, fmt.Sprintf("GOAWAY %s %q after %d frames (%s)", g.Code, g.Debug, g.Frames, g.After.Round(time.Millisecond)))
		if len(ans) == 3 {
			break
		}
	}
	if n := len(r.GoAways); n > 3 {
		ans = append(ans, fmt.Sprintf("%d GOAWAYs in all", n))
	}
	if len(r.Resets) > 0 {
		ans = append(ans, "RST_STREAM "+countMap(r.Resets))
	}
	if len(r.StatusEnds) > 0 {
		ans = append(ans, "streams ended with grpc-status "+countMap(r.StatusEnds))
	}
	if r.PingAcks > 0 {
		ans = append(ans, fmt.Sprintf("%d PING acks", r.PingAcks))
	}
	if r.SettingsAcks > 0 {
		ans = append(ans, fmt.Sprintf("%d SETTINGS acks", r.SettingsAcks))
	}
	if r.FirstClose != nil {
		ans = append(ans, fmt.Sprintf("%d connection(s) closed, the first after %d frames (%s)", r.ClosedCount, r.FirstClose.Frames, r.FirstClose.After.Round(time.Millisecond)))
	}
	if r.WriteBlocked > 0 {
		ans = append(ans, fmt.Sprintf("%d connection(s) stopped being read", r.WriteBlocked))
	}
	if len(ans) == 0 {
		ans = append(ans, "no GOAWAY, reset or close")
	}
	b.WriteString("; server: ")
	b.WriteString(strings.Join(ans, ", "))
	return b.String()
}

// GoAwayCode reports whether some connection got a GOAWAY with code.
func (r Result) GoAwayCode(code http2.ErrCode) bool {
	for _, g := range r.GoAways {
		if g.Code == code {
			return true
		}
	}
	return false
}

func countMap(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s x%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// Attack is one registered attack: its parameters (a pointer to a struct
// with defaults set, decoded by callers such as the scenario format) and
// how to run it.
type Attack struct {
	Name    string
	Summary string
	// Params returns a pointer to a fresh parameter struct with defaults.
	Params func() Params
}

// Params is what every attack's parameter struct implements.
type Params interface {
	// Validate names the first impossible parameter.
	Validate() error
	// SetRate sets the pace (frames or streams per second per connection;
	// 0: as fast as the connection takes them).
	SetRate(perSecond float64)
	// Pace is the rate set (the default's until SetRate).
	Pace() float64
	// Run runs the attack with these parameters.
	Run(ctx context.Context, t Target, req Request, report Report) (Result, error)
}

// Attacks is the catalogue, by name.
var Attacks = map[string]Attack{}

func register(a Attack) { Attacks[a.Name] = a }

// Names lists the attacks, sorted.
func Names() []string {
	out := make([]string, 0, len(Attacks))
	for n := range Attacks {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
