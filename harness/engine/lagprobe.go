package engine

import (
	"sync/atomic"
	"time"

	"github.com/bidikit/bidikit/harness/event"
)

// lagProbeEvery is how often the lag probe asks to wake; lagWindow is how
// often it reports (one event.HarnessLag per field per window).
const (
	lagProbeEvery = 5 * time.Millisecond
	lagWindow     = 250 * time.Millisecond
)

// lagMax is the largest lag seen since it was last taken; any goroutine
// may note, the lag probe takes.
type lagMax struct{ ns atomic.Int64 }

// note raises the maximum to d.
func (l *lagMax) note(d time.Duration) {
	for {
		cur := l.ns.Load()
		if int64(d) <= cur || l.ns.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// take returns the maximum and resets it.
func (l *lagMax) take() time.Duration { return time.Duration(l.ns.Swap(0)) }

// probeLag measures how far the harness itself falls behind, until stop
// closes: it sleeps lagProbeEvery at a time and notes how late it woke
// (CPU starvation, GC pauses), and every lagWindow emits as
// event.HarnessLag the larger of that maximum and the 99th percentile of
// how long the process's goroutines waited runnable in the window
// (runQueueLag), and the longest wait of an emitter on the dispatcher
// (r.dispatchLag). Checks that judge latency or a server's treatment of
// slow readers weigh their findings against it. It owns its timer.
func (r *run) probeLag(stop <-chan struct{}) {
	t := time.NewTimer(lagProbeEvery)
	defer t.Stop()
	runQueue := newRunQueueLag()
	var sched time.Duration
	asked := time.Now()
	windowEnd := asked.Add(lagWindow)
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			sched = max(sched, now.Sub(asked)-lagProbeEvery)
			if !now.Before(windowEnd) {
				sched = max(sched, runQueue.window())
				r.emitRun(&event.Event{Kind: event.HarnessLag, Field: event.LagScheduler, Latency: max(sched, 0)})
				r.emitRun(&event.Event{Kind: event.HarnessLag, Field: event.LagDispatch, Latency: r.dispatchLag.take()})
				sched = 0
				windowEnd = now.Add(lagWindow)
			}
			asked = time.Now()
			t.Reset(lagProbeEvery)
		}
	}
}
