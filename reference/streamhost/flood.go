package streamhost

import (
	"math"
	"time"
)

// FloodMode is how a FloodPolicy counts refusals.
type FloodMode int

const (
	// FloodInWindow: more than Limit refusals within one Window, a fixed
	// window that opens at the first refusal after the previous window
	// passed (chat: FloodFactor x SendBurst within FloodWindow).
	FloodInWindow FloodMode = iota
	// FloodInARow: Limit refusals with no allowed event between them
	// (collab: FloodStrikes). Window is not used.
	FloodInARow
	// FloodLeaky: a leaky bucket that leaks Limit refusals per Window; more
	// than Limit in it (game: FloodKickAfter within FloodWindow). Refusals
	// at a sustained rate below Limit per Window never trip it.
	FloodLeaky
)

// FloodPolicy decides when a sender whose events keep being refused (rate
// limited, dropped) is a flooder, whose stream the service then ends with
// RESOURCE_EXHAUSTED. Limit <= 0 disables it: refusals only.
type FloodPolicy struct {
	Mode   FloodMode
	Limit  int
	Window time.Duration
}

// Enabled reports whether the policy can ever trip.
func (p FloodPolicy) Enabled() bool { return p.Limit > 0 }

// FloodMeter holds one sender's refusals as a FloodPolicy counts them; the
// zero value is an empty meter. A meter belongs to the one goroutine that
// handles the sender's events.
type FloodMeter struct {
	n     float64   // refusals counted (in the window, in a row, in the bucket)
	since time.Time // when the window opened (InWindow); the last leak (Leaky)
}

// Allowed notes on m an event that was not refused: it ends a run of
// refusals (FloodInARow); the other modes ignore it.
func (p FloodPolicy) Allowed(m *FloodMeter) {
	if p.Mode == FloodInARow {
		m.n = 0
	}
}

// Refused notes n refusals at now on m and reports whether the sender is
// now a flooder under p (always false when p is disabled).
func (p FloodPolicy) Refused(m *FloodMeter, now time.Time, n int) bool {
	switch p.Mode {
	case FloodInWindow:
		if m.n == 0 || now.Sub(m.since) > p.Window {
			m.n, m.since = 0, now
		}
		m.n += float64(n)
		return p.Enabled() && m.n > float64(p.Limit)
	case FloodInARow:
		m.n += float64(n)
		return p.Enabled() && m.n >= float64(p.Limit)
	default: // FloodLeaky
		if !m.since.IsZero() && p.Window > 0 {
			leak := float64(p.Limit) * now.Sub(m.since).Seconds() / p.Window.Seconds()
			m.n = math.Max(0, m.n-leak)
		}
		m.since = now
		m.n += float64(n)
		return p.Enabled() && m.n > float64(p.Limit)
	}
}

// Count returns the refusals m holds (in the window, in a row, in the
// bucket), for the message that ends a flooder's stream.
func (m *FloodMeter) Count() int { return int(m.n) }
