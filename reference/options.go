package reference

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/keepalive"

	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/metrics"
)

// Default values of Options. A zero field of Options means "use the default".
const (
	DefaultAddr                 = "127.0.0.1:7070"
	DefaultAdminAddr            = "127.0.0.1:7071"
	DefaultMaxConcurrentStreams = 100
	DefaultMaxConnections       = 10_000
	DefaultMaxRecvMsgSize       = 64 << 10
	DefaultMaxHeaderListSize    = 16 << 10
	DefaultReadBufferSize       = 8 << 10
	DefaultKeepaliveTime        = 5 * time.Second
	DefaultKeepaliveTimeout     = 5 * time.Second
	DefaultKeepaliveMinTime     = 5 * time.Second
	DefaultGracePeriod          = 10 * time.Second
)

// Options configures a Server. Every zero field takes the default named in its
// comment, so Options{} is a working local server.
type Options struct {
	// Addr is the gRPC listen address. Default DefaultAddr (127.0.0.1:7070);
	// use "127.0.0.1:0" for a free port and read Server.Addr.
	Addr string
	// AdminAddr is the admin HTTP listen address (/metrics, /healthz,
	// /debug/pprof/). Default DefaultAdminAddr (127.0.0.1:7071): loopback,
	// because pprof is exposed. See DisableAdmin.
	AdminAddr string
	// DisableAdmin turns the admin HTTP server off. Default false.
	DisableAdmin bool

	// Authenticator maps bearer tokens to users for every call except health,
	// reflection and channelz. Default: none, and New fails — choose
	// auth.Tokens or, for local development only, auth.DevMode{}.
	Authenticator auth.Authenticator

	// MaxConcurrentStreams bounds open streams per connection; a client
	// opening more waits for a free slot (HTTP/2 flow control), it is not
	// refused. Default 100.
	MaxConcurrentStreams uint32
	// MaxConnections bounds open client connections. A connection over the
	// limit is closed at once (the client sees UNAVAILABLE) and counted in
	// bidikit_connections_refused_total. Default 10,000.
	MaxConnections int
	// MaxRecvMsgSize bounds one received message; a larger one ends its call
	// with RESOURCE_EXHAUSTED. Default 64 KiB.
	MaxRecvMsgSize int
	// MaxHeaderListSize bounds the request metadata (HTTP/2 header list) the
	// server accepts and advertises. A grpc-go client refuses to send more
	// (INTERNAL "header list size to send violates the maximum size"); a
	// client that sends anyway gets INTERNAL "header list size exceeds limit".
	// Default 16 KiB.
	MaxHeaderListSize uint32
	// ReadBufferSize is the size of a connection's read buffer in bytes
	// (grpc-go's default is 32 KiB). The buffer is lent from a pool only
	// while bytes read wait to be parsed (grpc-go's reads that pin no
	// memory, which the reference's connection wrappers implement:
	// internal/readyread), so an idle connection holds none; before, each held
	// its own, 8 KiB of an idle member's cost. Its size now trades only read
	// syscalls (a smaller buffer reads a burst in more of them) against the
	// bytes held while a burst is parsed. Write buffers are shared between
	// connections (grpc.SharedWriteBuffer) and likewise held only while
	// writing. Default 8 KiB.
	ReadBufferSize int

	// Keepalive makes the server ping a connection idle for Time and close it
	// when the ack does not come within Timeout, so a client that vanished
	// without FIN is cleaned up within about Time+Timeout (10 s by default).
	// Default {Time: 5s, Timeout: 5s}.
	Keepalive keepalive.ServerParameters
	// KeepalivePolicy is what clients' own pings must respect (a client
	// pinging more often than MinTime is closed with ENHANCE_YOUR_CALM).
	// Default {MinTime: 5s, PermitWithoutStream: true}; a zero MinTime takes
	// the default, so set both fields when overriding.
	KeepalivePolicy keepalive.EnforcementPolicy

	// H2Limits bound the HTTP/2 frames a connection may send that carry
	// no request (control frames, resets, empty frames): floods grpc-go
	// absorbs one frame at a time. Default: every limit at its default
	// (h2limits.go); H2Limits{Disable: true} turns the guard off.
	H2Limits H2Limits

	// GracePeriod bounds graceful shutdown as a whole: services' Drain and
	// the gRPC GracefulStop share it; when it runs out the server stops hard.
	// Default 10s.
	GracePeriod time.Duration

	// Registry is the server's own Prometheus registry, served on /metrics.
	// Default: a new registry with the Go and process collectors. A registry
	// passed here gets the gRPC and reference collectors added but is not given
	// Go/process collectors (NewRegistry does that).
	Registry *prometheus.Registry
	// Metrics is the bidikit_* set the hosted services update. Services are
	// built before New, so the usual sequence is
	//
	//	reg, set := reference.NewRegistry()
	//	chatSvc, _ := chat.New(cfg, st, set, acl, log)
	//	srv, _ := reference.New(reference.Options{Registry: reg, Metrics: set, ...}, chatSvc)
	//
	// Default: metrics.New(Registry). Setting Metrics requires setting the
	// Registry it is registered on.
	Metrics *metrics.Set

	// Logger receives the server's logs (start, stop, panics; streams at
	// debug level). Default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns o with every zero field replaced by its default.
func (o Options) withDefaults() (Options, error) {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.AdminAddr == "" {
		o.AdminAddr = DefaultAdminAddr
	}
	if o.Authenticator == nil {
		return o, errors.New("reference: Options.Authenticator is required (auth.Tokens, or auth.DevMode{} for local development)")
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.MaxConnections < 0 {
		return o, fmt.Errorf("reference: Options.MaxConnections %d is negative", o.MaxConnections)
	}
	if o.MaxRecvMsgSize == 0 {
		o.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if o.MaxRecvMsgSize < 0 {
		return o, fmt.Errorf("reference: Options.MaxRecvMsgSize %d is negative", o.MaxRecvMsgSize)
	}
	if o.MaxHeaderListSize == 0 {
		o.MaxHeaderListSize = DefaultMaxHeaderListSize
	}
	if o.ReadBufferSize == 0 {
		o.ReadBufferSize = DefaultReadBufferSize
	}
	if o.ReadBufferSize < 0 {
		return o, fmt.Errorf("reference: Options.ReadBufferSize %d is negative", o.ReadBufferSize)
	}
	if o.Keepalive.Time == 0 {
		o.Keepalive.Time = DefaultKeepaliveTime
	}
	if o.Keepalive.Timeout == 0 {
		o.Keepalive.Timeout = DefaultKeepaliveTimeout
	}
	if o.KeepalivePolicy.MinTime == 0 {
		o.KeepalivePolicy = keepalive.EnforcementPolicy{MinTime: DefaultKeepaliveMinTime, PermitWithoutStream: true}
	}
	h2, err := o.H2Limits.withDefaults()
	if err != nil {
		return o, fmt.Errorf("reference: %w", err)
	}
	o.H2Limits = h2
	if o.GracePeriod == 0 {
		o.GracePeriod = DefaultGracePeriod
	}
	if o.GracePeriod < 0 {
		return o, fmt.Errorf("reference: Options.GracePeriod %v is negative", o.GracePeriod)
	}
	if o.Metrics != nil && o.Registry == nil {
		return o, errors.New("reference: Options.Metrics is set but Options.Registry is not: pass the registry the set is registered on")
	}
	if o.Registry == nil {
		o.Registry = newRegistry()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(o.Registry)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
