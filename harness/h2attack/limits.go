package h2attack

import (
	"fmt"
	"math"
	"time"
)

// limits bound one attack: how many connections, how many frames (or
// streams) per connection, at what pace, for how long. Every attack's
// params resolve to one.
type limits struct {
	connections int
	count       int     // per connection
	rate        float64 // per connection per second; 0 = unpaced
	duration    time.Duration
}

// validate names the first limit out of range; countName is the params
// field that holds count ("count", "streams").
func (l limits) validate(attack, countName string) error {
	switch {
	case l.connections < 1 || l.connections > MaxConnections:
		return fmt.Errorf("%s: connections must be within [1, %d], got %d", attack, MaxConnections, l.connections)
	case l.count < 1 || l.count > MaxCount:
		return fmt.Errorf("%s: %s must be within [1, %d], got %d", attack, countName, MaxCount, l.count)
	case math.IsNaN(l.rate) || l.rate < 0 || l.rate > MaxRate:
		return fmt.Errorf("%s: rate must be within [0, %d] per second (0: unpaced), got %v", attack, MaxRate, l.rate)
	case l.duration <= 0 || l.duration > MaxDuration:
		return fmt.Errorf("%s: duration must be within (0, %s], got %s", attack, MaxDuration, l.duration)
	}
	return nil
}

func (l limits) String() string {
	rate := "unpaced"
	if l.rate > 0 {
		rate = fmt.Sprintf("%g/s per connection", l.rate)
	}
	return fmt.Sprintf("%d connection(s), at most %d each, %s, at most %s", l.connections, l.count, rate, l.duration)
}
