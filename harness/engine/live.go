package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
)

// snapEvery is how often the dispatcher refreshes the figures that cost a
// histogram walk (p99) or a copy (errors by code) for progress displays.
const snapEvery = 200 * time.Millisecond

// live is what the dispatcher publishes while the run goes on, for the
// progress goroutine and --fail-fast. The counters are atomics; mu guards
// the rest. The dispatcher alone writes; last is its own.
type live struct {
	sent, delivered, acked, errors, connected atomic.Int64

	mu       sync.Mutex
	p99      time.Duration
	byCode   map[string]int
	violated []Violation

	last     []int           // dispatcher-owned: each check's live count at the last poll (-1: not live)
	firstAt  []time.Duration // dispatcher-owned: when each check's count first went above 0 (0: never)
	lastSnap time.Time       // dispatcher-owned
	// nudge wakes the progress goroutine when a check finds its first
	// violation (capacity 1; a full channel already holds the news).
	nudge chan struct{}
}

// stage is Run's phase and start time for the progress goroutine, which
// runs from the baselines until the verdicts (Run writes, it reads).
type stage struct {
	phase atomic.Value // Phase
	start atomic.Int64 // r.start in Unix nanoseconds; 0 before the clients start
}

func (s *stage) set(p Phase) { s.phase.Store(p) }

func (s *stage) get() Phase {
	p, _ := s.phase.Load().(Phase)
	return p
}

func (s *stage) elapsed() time.Duration {
	if n := s.start.Load(); n != 0 {
		return time.Since(time.Unix(0, n))
	}
	return 0
}

// abort ends the run early for --fail-fast: the first call records why and
// closes abortC; later calls do nothing. Any goroutine.
func (r *run) abort(why string) {
	r.abortOnce.Do(func() {
		r.abortWhy = why
		close(r.abortC)
	})
}

// initLive prepares the dispatcher's live state for the judge's checks.
func (r *run) initLive() {
	checks, _ := r.judge.Checks()
	r.live.last = make([]int, len(checks))
	r.live.firstAt = make([]time.Duration, len(checks))
	for i, ck := range checks {
		if _, ok := ck.(check.Live); !ok {
			r.live.last[i] = -1
		}
	}
	r.live.nudge = make(chan struct{}, 1)
	r.stage.set(PhaseStarting)
}

// observed publishes the figures after a batch whose latest event time was
// at: the counters always, the live checks' counts (a check's first
// violation nudges the progress goroutine and, with --fail-fast, aborts the
// run), and every snapEvery the p99 and errors by code. Dispatcher only.
func (r *run) observed(at time.Duration, force bool) {
	col := r.judge.Metrics()
	checks, names := r.judge.Checks()
	m := col.Messages()
	r.live.sent.Store(m.Sent)
	r.live.delivered.Store(m.Delivered)
	r.live.acked.Store(m.Acked)
	r.live.connected.Store(int64(col.Connected()))
	r.live.errors.Store(int64(col.ErrorCount()))

	changed, first := false, ""
	for i, ck := range checks {
		if r.live.last[i] < 0 {
			continue
		}
		n, _ := check.LiveViolations(ck)
		if n == r.live.last[i] {
			continue
		}
		changed = true
		if r.live.last[i] == 0 && n > 0 { // a first violation, or a threshold crossing again
			if r.live.firstAt[i] == 0 {
				r.live.firstAt[i] = max(at, 1)
			}
			if first == "" {
				first = names[i]
			}
		}
		r.live.last[i] = n
	}
	now := time.Now()
	if !changed && !force && now.Sub(r.live.lastSnap) < snapEvery {
		return
	}
	r.live.lastSnap = now
	var violated []Violation
	for i, n := range r.live.last {
		if n > 0 {
			violated = append(violated, Violation{Check: names[i], Violations: n, At: r.live.firstAt[i]})
		}
	}
	p99 := col.LatencyQuantile(99)
	byCode := col.ErrorsByCode()
	r.live.mu.Lock()
	r.live.p99, r.live.byCode, r.live.violated = p99, byCode, violated
	r.live.mu.Unlock()
	if first != "" {
		select {
		case r.live.nudge <- struct{}{}:
		default:
		}
		if r.opts.failFast {
			r.abort(fmt.Sprintf("fail-fast: check %s found its first violation at %s of %s", first, at.Round(time.Millisecond), r.s.Duration))
		}
	}
}

// maxAt is the latest event time in b.
func maxAt(b []event.Event) time.Duration {
	var at time.Duration
	for i := range b {
		at = max(at, b[i].At)
	}
	return at
}

// progress reports to the caller's callback every progress interval, and
// at once when a check finds its first violation, until stop is closed.
func (r *run) progress(stop <-chan struct{}) {
	t := time.NewTicker(r.opts.progressInt)
	defer t.Stop()
	var lastSent, lastDelivered int64
	var sentRate, delRate float64
	last := time.Now()
	smooth := r.opts.progressInt < time.Second
	for {
		nudged := false
		select {
		case <-stop:
			return
		case <-r.live.nudge:
			nudged = true
		case now := <-t.C:
			sent, del := r.live.sent.Load(), r.live.delivered.Load()
			secs := now.Sub(last).Seconds()
			is, id := float64(sent-lastSent)/secs, float64(del-lastDelivered)/secs
			if r.stage.get() != PhaseRunning && r.stage.get() != PhaseStopping {
				is, id = 0, 0
			}
			lastSent, lastDelivered, last = sent, del, now
			if smooth { // about a second's worth of short intervals
				sentRate, delRate = 0.75*sentRate+0.25*is, 0.75*delRate+0.25*id
			} else {
				sentRate, delRate = is, id
			}
		}
		r.live.mu.Lock()
		p99, byCode, violated := r.live.p99, r.live.byCode, r.live.violated
		r.live.mu.Unlock()
		codes := make(map[string]int, len(byCode))
		for k, v := range byCode {
			codes[k] = v
		}
		r.opts.progress(Progress{
			Scenario: r.s.Name, Phase: r.stage.get(), Elapsed: r.stage.elapsed(), Duration: r.s.Duration,
			Connected: int(r.live.connected.Load()), Clients: len(r.clients),
			MessagesPerSec: sentRate, DeliveredPerSec: delRate,
			Sent: r.live.sent.Load(), Delivered: r.live.delivered.Load(), Acked: r.live.acked.Load(),
			Errors: int(r.live.errors.Load()), ErrorsByCode: codes, P99: p99,
			Violated: append([]Violation(nil), violated...), NewViolation: nudged,
		})
	}
}

// InterruptedVerdictLimit bounds how long, after an interrupt, the checks
// that ask the server (leaks, health, the collab server's state) may take:
// what they cannot learn in time they report as not measurable.
const InterruptedVerdictLimit = 10 * time.Second

// ErrInterrupted is wrapped by Run's error when ctx was cancelled after the
// clients started; the result then holds the verdicts on what was seen.
var ErrInterrupted = errors.New("interrupted")

// stopEarly waits until the clients are done (clientsDone), or until ctx is
// cancelled or --fail-fast aborts the run: then it stops the fault
// schedule and every client as at its end time, and cuts off (cancelRun)
// the clients still running twice the stop grace later.
func (r *run) stopEarly(ctx context.Context, clientsDone <-chan struct{}, stops []func(), cancelFaults, cancelRun func()) {
	select {
	case <-clientsDone:
		return
	case <-ctx.Done():
	case <-r.abortC:
	}
	r.stoppedEarly, r.stoppedAt = true, r.since()
	r.stage.set(PhaseStopping)
	cancelFaults()
	for _, stop := range stops {
		stop()
	}
	t := time.NewTimer(2 * r.opts.stopGrace)
	defer t.Stop()
	select {
	case <-clientsDone:
	case <-t.C:
		r.opts.log.Warn("clients still running after the stop grace: cutting them off", "grace", 2*r.opts.stopGrace)
		cancelRun()
	}
}

// interruptedWhy is Result.Interrupted for a cancelled ctx: the cause and
// how far the run got (early: the clients were told to stop at at; else
// they had stopped already).
func interruptedWhy(ctx context.Context, early bool, at, elapsed, duration time.Duration) string {
	if !early {
		return fmt.Sprintf("interrupted (%v) after the clients stopped, at %s",
			context.Cause(ctx), elapsed.Round(100*time.Millisecond))
	}
	return fmt.Sprintf("interrupted (%v) at %s of %s", context.Cause(ctx), at.Round(100*time.Millisecond), duration)
}
