package check

import (
	"fmt"
	"time"

	"github.com/bidikit/bidikit/harness/event"
)

// maxLagSamples bounds the harness-lag windows a checker keeps (the engine
// reports two per 250 ms: over an hour of run).
const maxLagSamples = 40000

// harnessLag keeps the engine's event.HarnessLag reports, so a checker can
// tell what the harness's own lag may have done to what it measured in a
// span of the run. Owned by its checker (the dispatcher goroutine).
type harnessLag struct {
	samples []lagSample
}

type lagSample struct {
	at       time.Duration // the window's end
	dispatch bool
	lag      time.Duration
}

// observe keeps e if it is a harness-lag report and says whether it was.
func (h *harnessLag) observe(e *event.Event) bool {
	if e.Kind != event.HarnessLag {
		return false
	}
	if len(h.samples) < maxLagSamples {
		h.samples = append(h.samples, lagSample{at: e.At, dispatch: e.Field == event.LagDispatch, lag: e.Latency})
	}
	return true
}

// lagIn is the harness's lag over a span of the run: the most the
// scheduler probe woke late and the longest dispatcher wait, over the
// windows reported (windows = 0: the engine reported none, e.g. a raw
// file of an older version).
type lagIn struct {
	sched, dispatch time.Duration
	windows         int
}

// in returns the lag of the windows that overlap [from, to] (a window
// ends at its sample's time and lasts at most half a second).
func (h *harnessLag) in(from, to time.Duration) lagIn {
	var l lagIn
	for _, s := range h.samples {
		if s.at < from || s.at > to+500*time.Millisecond {
			continue
		}
		l.windows++
		if s.dispatch {
			l.dispatch = max(l.dispatch, s.lag)
		} else {
			l.sched = max(l.sched, s.lag)
		}
	}
	return l
}

// latencyAllowance is the most the harness's own lag can have added to
// one message's measured latency: a late wake on the sending side, and on
// the receiving side a late wake plus a wait for the dispatcher.
func (l lagIn) latencyAllowance() time.Duration { return 2*l.sched + l.dispatch }

// pause is the longest the harness may have stopped reading a stream.
func (l lagIn) pause() time.Duration { return l.sched + l.dispatch }

func (l lagIn) String() string {
	if l.windows == 0 {
		return "harness lag not reported"
	}
	return fmt.Sprintf("harness lag up to %s (scheduler %s, dispatch %s)",
		(l.sched + l.dispatch).Round(time.Millisecond), l.sched.Round(time.Millisecond), l.dispatch.Round(time.Millisecond))
}
