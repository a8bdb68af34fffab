package metrics

import (
	"time"

	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/result"
)

// roleTimeline is one role's timeline (result.Role.Timeline): the same
// interval grid as the scenario's, since every timeline starts at 0 with
// DefaultInterval and compacts at the same count, however lazily it is
// advanced. It is advanced only by its own role's events (one comparison
// per event) and closed at Finish.
type roleTimeline struct {
	tl        timeline
	connected int
}

// observe counts e, an event of this role's clients, on the role's
// timeline: what the scenario's timeline counts, for this role only.
// Owned by the collector's goroutine; allocates nothing.
func (rt *roleTimeline) observe(e *event.Event) {
	rt.tl.advance(e.At)
	cur := rt.tl.cur()
	switch e.Kind {
	case event.Send:
		cur.sent++
	case event.Deliver, event.Tick:
		// Game updates are the game's deliveries; input-to-update is
		// their latency (as on the scenario's timeline).
		cur.delivered++
		if e.Latency > 0 {
			record(rt.tl.hist, e.Latency)
		}
	case event.Connect:
		rt.connected++
	case event.Disconnect:
		rt.connected = max(rt.connected-1, 0)
		if e.Code != codes.OK {
			cur.errors++
		}
	case event.Error:
		cur.errors++
	}
	cur.connected = rt.connected
}

// finish closes the role's timeline at the run's end.
func (rt *roleTimeline) finish(at time.Duration) {
	rt.tl.advance(at)
	rt.tl.close(at)
}

// points is the role's timeline for result.Role.Timeline.
func (rt *roleTimeline) points() []result.Point { return rt.tl.points() }
