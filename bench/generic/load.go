package generic

import (
	"fmt"
	"math"
	"time"
)

// Mode is how a stream sends: the three ways of driving a method that
// give latency different meanings.
type Mode string

const (
	// ModeSaturating sends every message as soon as the previous one is
	// written, without waiting for responses: a throughput figure. Its
	// latency counts the time a message spends behind the stream's own
	// backlog, so it says how deep the queue got, not how fast the server
	// answers.
	ModeSaturating Mode = "saturating"
	// ModeInterval is ghz's --stream-interval: a pause after each send.
	// Latency from the actual send (not corrected for coordinated
	// omission).
	ModeInterval Mode = "interval"
	// ModePaced sends open-loop at Rate messages per second per stream,
	// each on a schedule fixed in advance; latency runs from the scheduled
	// send time, so a server stall that holds sends back is counted in
	// every message it delayed (coordinated omission corrected).
	ModePaced Mode = "paced"
	// ModeWindowed keeps at most Window messages per stream waiting for
	// their responses (closed loop; Window 1 is ping-pong). Latency from
	// the actual send.
	ModeWindowed Mode = "windowed"
)

// Mode is the mode c's flags select.
func (c Config) Mode() Mode {
	switch {
	case c.Rate > 0:
		return ModePaced
	case c.Window > 0:
		return ModeWindowed
	case c.StreamInterval > 0:
		return ModeInterval
	}
	return ModeSaturating
}

// latencyOf says what the latency of a run in mode m measures, for the
// result's latency_of.
func latencyOf(c Config) string {
	switch c.Mode() {
	case ModePaced:
		return fmt.Sprintf("per message, from its scheduled send time to its response (paced open loop, %g/s per stream; corrected for coordinated omission)", c.Rate)
	case ModeWindowed:
		return fmt.Sprintf("per message, send to response, at most %d in flight per stream (windowed, closed loop)", c.Window)
	case ModeInterval:
		return fmt.Sprintf("per message, send to response, a %v pause after each send (ghz's --stream-interval)", c.StreamInterval)
	}
	return "SATURATING: per message, send to response, every stream sending without waiting; the latency is the driver's own send backlog, not the server's response time (use --rate or --window for latency)"
}

// validateLoad checks the flags that shape the load: the mode, and -n
// against -z, -x and --stream-call-count.
func (c Config) validateLoad() error {
	switch {
	case math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Rate < 0:
		return usagef("--rate %v: want messages per second per stream, > 0", c.Rate)
	case c.Rate > 0 && c.Window > 0:
		return usagef("--rate (paced, open loop) and --window (closed loop) exclude each other: pick one mode")
	case c.StreamInterval > 0 && (c.Rate > 0 || c.Window > 0):
		return usagef("--stream-interval is ghz's pause after each send; with --rate or --window the mode sets the pace: drop it")
	case c.StreamInterval < 0:
		return usagef("--stream-interval %v is negative", c.StreamInterval)
	case c.Rate > 0 && 1/c.Rate < float64(time.Microsecond)/float64(time.Second):
		return usagef("--rate %v per stream is more than one message a microsecond: leave --rate out for a saturating run", c.Rate)
	}
	if c.Total > 0 {
		switch {
		case c.Duration > 0:
			return usagef("-n (%d calls) and -z (%v) exclude each other: ghz ignores -n when -z is set, bidikit asks for one", c.Total, c.Duration)
		case c.StreamCallCount == 0:
			return usagef("-n counts calls (ghz's requests) and with --stream-call-count 0 a call never ends: give --stream-call-count K (the round then sends n x K messages)")
		}
	} else if c.MaxDuration > 0 {
		return usagef("-x (--max-duration) bounds a run of -n calls; a run of -z rounds is bounded by -z")
	}
	if c.MaxDuration < 0 || c.Duration < 0 {
		return usagef("-z and -x must not be negative")
	}
	return nil
}

// CompareRefusal says why `--vs ghz` cannot compare c's run with ghz's
// ("" when it can): ghz's streams always saturate, a ghz call with
// --stream-call-count 0 sends its data's messages once and ends (bidikit's
// stream then runs until the round ends), and an -x bound cuts the two
// tools' rounds at different message counts. In each case messages/s
// would compare different work.
func CompareRefusal(c Config) string {
	switch {
	case c.Rate > 0 || c.Window > 0:
		return fmt.Sprintf("ghz has only the saturating mode (its streams send without waiting), and this run is %s: compare saturating runs (drop --rate and --window)", c.Mode())
	case c.StreamCallCount == 0:
		return "with --stream-call-count 0 each bidikit stream sends until the round ends, while each ghz call sends its data's messages once (one, for an object) and ends: the work differs. Give --stream-call-count N: both tools then send N messages per call"
	case c.MaxDuration > 0:
		return "-x cuts each tool's round at a different number of messages: compare -n rounds without -x, or -z rounds"
	}
	return ""
}
