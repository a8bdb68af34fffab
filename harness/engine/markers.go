package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/result"
)

// serverMarks holds the markers of what server faults did that the event
// stream does not show: a restart happens on the kill-server fault's own
// goroutine, possibly after the run's events are closed, so it is recorded
// here (mu) rather than emitted, and taken once when the result is built.
type serverMarks struct {
	mu    sync.Mutex
	marks []result.Marker
}

func (m *serverMarks) add(mk result.Marker) {
	m.mu.Lock()
	m.marks = append(m.marks, mk)
	m.mu.Unlock()
}

func (m *serverMarks) take() []result.Marker {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.marks
	m.marks = nil
	return out
}

// watchedServer is the fault.Server faults get (run.Server): the caller's,
// with each restart recorded as a marker. The kill itself is marked from
// the kill-server Fault event (metrics).
type watchedServer struct {
	fault.Server
	r *run
}

// Restart implements fault.Server.
func (w watchedServer) Restart(ctx context.Context) error {
	began := w.r.since()
	err := w.Server.Restart(ctx)
	at := w.r.since()
	mk := result.Marker{AtS: at.Seconds(), Kind: result.MarkServerRestart, Label: "kill-server",
		Detail: fmt.Sprintf("the spawned server serves again (the restart took %s)", (at - began).Round(time.Millisecond))}
	if err != nil {
		mk.Label, mk.Detail = "kill-server (the restart failed)", fmt.Sprintf("restarting the spawned server failed after %s: %v", (at-began).Round(time.Millisecond), err)
	}
	w.r.srvMarks.add(mk)
	return err
}

// addMarkers completes res.Markers once the checks have judged: the
// server restarts, and each failed check's first violation (its evidence,
// else when the live polling saw it).
func (r *run) addMarkers(res *result.Scenario) {
	res.Markers = append(res.Markers, r.srvMarks.take()...)
	res.MarkViolations(r.live.firstAt)
}
