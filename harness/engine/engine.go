package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/judge"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
)

// run is one scenario's running state. Immutable after setup except where
// noted: counters are atomics; the dispatcher goroutine owns col and checks.
type run struct {
	s     *scenario.Scenario
	svc   Service // the scenario's service: as registered, or as its Prepare made it for this run
	plan  *scenario.Plan
	opts  options
	addrs []string // what clients dial: the targets, or the proxy in front of the one target
	start time.Time

	pool    *pool
	clients []*vclient // this shard's clients (all of them when not sharded)
	byIndex []*vclient // plan index -> client; nil for other shards' clients
	events  chan []event.Event
	runEm   emitter // run-wide events (Client -1), any goroutine

	// judge turns the event stream into metrics and verdicts; the
	// dispatcher goroutine owns it while events flow, Run after.
	judge *judge.Judge
	// mine says which of the plan's clients this shard runs.
	mine []bool
	// cleanups run when Run returns, last first (defer_).
	cleanups []func()

	proxy *toxiproxy.Proxy
	env   *env

	attackOnce sync.Once
	// flushing counts the clients whose final report waits until every
	// such client's last sends are committed (collab editors: no replica is
	// reported before every edit is); allFlushed closes when it reaches
	// zero. Each counted client calls flushed once.
	flushing   atomic.Int64
	allFlushed chan struct{}
	counters   struct {
		behind       atomic.Int64 // paced sends skipped because the sender fell behind
		faultDropped atomic.Int64 // fault commands dropped: the client's queue was full
		faultFailed  atomic.Int64 // fault injections that returned an error
	}
	// dispatchLag is the longest an emitter waited for the dispatcher since
	// the lag probe last reported (see probeLag).
	dispatchLag lagMax
	// live is what the dispatcher publishes for progress and --fail-fast;
	// stage is Run's phase for the progress goroutine.
	live  live
	stage stage
	// abortC closes at --fail-fast's first violation (see abort); abortWhy
	// is written once, before.
	abortOnce sync.Once
	abortC    chan struct{}
	abortWhy  string
	// stoppedEarly is set when stopEarly stopped the clients, at
	// stoppedAt; both written before watchDone closes.
	stoppedEarly bool
	stoppedAt    time.Duration
	// srvMarks records server restarts for the result's markers.
	srvMarks serverMarks
}

func (r *run) since() time.Duration { return time.Since(r.start) }

// token is the bearer token a client presents: --token, or its user id.
func (r *run) token(user string) string {
	if r.opts.token != "" {
		return r.opts.token
	}
	return user
}

// flushed records that one counted client has nothing unacknowledged left
// (or has stopped for good). Each client counted in flushing calls it once.
func (r *run) flushed() {
	if r.flushing.Add(-1) == 0 {
		close(r.allFlushed)
	}
}

// emitRun emits a run-wide event (Client -1).
func (r *run) emitRun(e *event.Event) {
	e.At = r.since()
	e.Client = -1
	r.runEm.emit(e)
}

// Run runs s against the target and returns its result. Run blocks until
// every client has stopped (at s.Duration plus a bounded grace), the settle
// time has passed and every checker has given its verdict. An error means
// the scenario could not run or complete (bad options, target unreachable
// within the dial timeout (ErrUnreachable), the scenario's service refused
// to a probe stream before any client started (ErrRejected), ctx cancelled
// before the clients started); the returned result then has Failure set.
// Failed checks are not errors: see result.Scenario.Passed.
//
// Once the clients have started, cancelling ctx (SIGINT) interrupts the
// run: the clients stop as at their end time (cut off after twice the stop
// grace), the settle time is skipped, every check judges what was seen
// (with up to InterruptedVerdictLimit for the ones that ask the server),
// and the result has Interrupted set; the error wraps ErrInterrupted and
// ctx's error. WithFailFast ends the run the same way at a check's first
// live violation, without an error.
func Run(ctx context.Context, s *scenario.Scenario, opts ...Option) (result.Scenario, error) {
	res := result.Scenario{Name: s.Name, File: s.File, Service: s.Service, Seed: s.Seed, Errors: map[string]int{}}
	fail := func(err error) (result.Scenario, error) {
		res.Failure = err.Error()
		res.Passed = false
		return res, err
	}
	r, needProxy, err := newRun(s, opts)
	if r != nil {
		res.RunID = r.opts.runID
	}
	if err != nil {
		return fail(err)
	}
	defer r.cleanup()
	if err := r.connect(ctx, needProxy); err != nil {
		return fail(err)
	}
	if err := r.buildClients(); err != nil {
		return fail(err)
	}
	r.initLive()
	r.abortC = make(chan struct{})
	if r.opts.progress != nil {
		progStop := make(chan struct{})
		var prog sync.WaitGroup
		prog.Go(func() { r.progress(progStop) })
		r.defer_(func() {
			close(progStop)
			prog.Wait()
		})
	}
	// Baselines before any client connects.
	if err := r.judge.Start(ctx, r.env); err != nil {
		return fail(err)
	}
	elapsed := r.execute(ctx)
	r.conclude(ctx, &res, elapsed)
	if ctx.Err() != nil {
		return res, fmt.Errorf("scenario %s %w (%v): %w", s.Name, ErrInterrupted, context.Cause(ctx), ctx.Err())
	}
	return res, nil
}

// defer_ registers f to run when Run returns (last registered first).
func (r *run) defer_(f func()) { r.cleanups = append(r.cleanups, f) }

// cleanup runs what defer_ registered.
func (r *run) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

// newRun applies opts and checks what can be checked before touching the
// network: the service, the checkers (the judge), and that each fault's
// scope fits the targets. needProxy says a connection fault needs the
// toxiproxy proxy. A non-nil run comes with an error only when the options
// were read (its run id is then known).
func newRun(s *scenario.Scenario, opts []Option) (r *run, needProxy bool, err error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, false, err
		}
	}
	if len(o.targets) == 0 {
		return nil, false, errors.New("engine: no target (use WithTarget or WithTargets)")
	}
	if o.runID == "" {
		o.runID = newRunID()
	}
	s = withDefaults(s)
	r = &run{s: s, plan: scenario.NewPlan(s), opts: o, addrs: o.targets}
	if r.svc, err = services.Get(s.Service); err != nil {
		return r, false, fmt.Errorf("%s: %w", s.File, err)
	}
	r.mine = r.plan.Mine(o.shardIndex, o.shardCount)
	if r.judge, err = judge.New(s, r.plan, func(i int) bool { return r.mine[i] }); err != nil {
		return r, false, err
	}
	for _, f := range s.Faults {
		switch f.Scope {
		case fault.Connection:
			// One toxiproxy proxy (fault.Env.Proxy) fronts one upstream.
			if len(o.targets) > 1 {
				return r, false, fmt.Errorf("%s:%d: fault %q acts on connections through one proxy in front of one target; this run has %d targets (%s): give a single target", s.File, f.Line, f.Fault, len(o.targets), strings.Join(o.targets, ","))
			}
			needProxy = true
		case fault.ServerProcess:
			if o.faultServer == nil {
				return r, false, fmt.Errorf("%s:%d: fault %q acts on the server process, which only a harness-spawned server allows (bidikit run --spawn-server)", s.File, f.Line, f.Fault)
			}
		}
	}
	return r, needProxy, nil
}

// connect reaches the targets (preflight), probes the scenario's service
// with a client's token, starts the fault proxy when needed and prepares
// the connection pool.
func (r *run) connect(ctx context.Context, needProxy bool) error {
	env, err := newEnv(ctx, &r.opts)
	if err != nil {
		return err
	}
	r.defer_(env.close)
	r.env = env
	if err := env.preflight(ctx); err != nil {
		return err
	}
	if err := r.prepare(ctx); err != nil {
		return err
	}
	if err := env.probeService(ctx, r.svc, probeUser(r.plan), r.token(probeUser(r.plan))); err != nil {
		return err
	}
	if needProxy {
		p, stop, err := fault.StartProxy(ctx, r.opts.targets[0])
		if err != nil {
			return err
		}
		r.defer_(stop)
		r.proxy = p
		r.addrs = []string{p.Listen}
	}
	r.pool = newPool(r.addrs, r.s.StreamsPerConn, &r.opts)
	r.defer_(r.pool.closeAll)
	return nil
}

// buildClients makes this shard's virtual clients.
func (r *run) buildClients() error {
	r.events = make(chan []event.Event, 1024)
	r.runEm = emitter{out: r.events, lag: &r.dispatchLag}
	r.allFlushed = make(chan struct{})
	r.byIndex = make([]*vclient, len(r.plan.Clients))
	for i := range r.plan.Clients {
		if !r.mine[i] {
			continue
		}
		c, err := newClient(r, i)
		if err != nil {
			return fmt.Errorf("%s: %w", r.s.File, err)
		}
		r.clients = append(r.clients, c)
		r.byIndex[i] = c
	}
	if r.flushing.Load() == 0 {
		close(r.allFlushed)
	}
	return nil
}

// execute runs the clients and the fault schedule from now until every
// client has stopped (at its end, or earlier on an interrupt or a
// --fail-fast abort), runs the service's end-of-run step, and hands the
// judge every event. It returns the run's length as the clients saw it.
func (r *run) execute(ctx context.Context) time.Duration {
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		r.dispatch()
	}()
	r.start = time.Now()
	r.stage.start.Store(r.start.UnixNano())
	r.stage.set(PhaseRunning)
	if r.opts.tap != nil {
		r.opts.tap.Begin(r.start)
	}
	// The clients' context outlives ctx: an interrupt stops them the way
	// their end time does (below), and cancelRun cuts off what is left.
	rctx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	fctx, cancelFaults := context.WithCancel(rctx)
	defer cancelFaults()

	var bg sync.WaitGroup // flusher, lag probe
	bgStop := make(chan struct{})
	bg.Go(func() { r.flusher(bgStop) })
	bg.Go(func() { r.probeLag(bgStop) })

	// Each client stops at its role's end (or the run's), or earlier when
	// the run is interrupted or fails fast.
	var timers []*time.Timer
	stops := make([]func(), len(r.clients))
	for i, c := range r.clients {
		end := r.s.Duration
		if c.role.Stop > 0 && c.role.Stop < end {
			end = c.role.Stop
		}
		stops[i] = sync.OnceFunc(func() { close(c.stopC) })
		timers = append(timers, time.AfterFunc(end, stops[i]))
	}
	var clients sync.WaitGroup
	for _, c := range r.clients {
		clients.Go(func() { c.run(rctx) })
	}
	var faults sync.WaitGroup
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		r.schedule(fctx, &faults)
	}()
	clientsDone := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		r.stopEarly(ctx, clientsDone, stops, cancelFaults, cancelRun)
	}()

	clients.Wait()
	close(clientsDone)
	<-watchDone
	for _, t := range timers {
		t.Stop()
	}
	cancelRun() // ends the fault schedule and faults with a duration
	<-faultsDone
	faults.Wait()
	if r.svc.EndOfRun != nil {
		ectx, cancel := r.verdictContext(ctx)
		r.svc.EndOfRun(ectx, endOfRun{r})
		cancel()
	}
	elapsed := r.since()

	close(bgStop)
	bg.Wait()
	for _, c := range r.clients {
		c.em.flush()
	}
	r.runEm.flush()
	close(r.events)
	<-dispatched
	return elapsed
}

// verdictContext is the context for what still asks the server after the
// clients stopped: ctx, or after an interrupt a bounded one of its own.
func (r *run) verdictContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Err() != nil {
		return context.WithTimeout(context.WithoutCancel(ctx), InterruptedVerdictLimit)
	}
	return ctx, func() {}
}

// conclude fills res: the metrics over elapsed, the harness's own
// counters, the settle wait, every verdict and the markers.
func (r *run) conclude(ctx context.Context, res *result.Scenario, elapsed time.Duration) {
	col := r.judge.Metrics()
	col.AddError("harness:sender-behind", int(r.counters.behind.Load()))
	col.AddError("harness:fault-dropped", int(r.counters.faultDropped.Load()))
	col.AddError("harness:fault-failed", int(r.counters.faultFailed.Load()))
	r.judge.Finish(res, elapsed)
	res.Clients = len(r.clients)
	if r.stoppedEarly && ctx.Err() == nil {
		res.Interrupted = r.abortWhy // --fail-fast
	}
	if ctx.Err() == nil && r.s.Settle > 0 {
		r.stage.set(PhaseSettling)
		sleepCtx(ctx, r.s.Settle)
	}
	vctx, cancel := r.verdictContext(ctx)
	defer cancel()
	if ctx.Err() != nil {
		res.Interrupted = interruptedWhy(ctx, r.stoppedEarly, r.stoppedAt, elapsed, r.s.Duration)
	}
	r.stage.set(PhaseJudging)
	var venv check.Env = r.env
	var hl *healthLog
	if r.opts.tap != nil {
		hl = &healthLog{Env: r.env}
		venv = hl
	}
	r.judge.Verdicts(vctx, venv, res, nil)
	r.addMarkers(res)
	if r.opts.tap != nil {
		r.opts.tap.End(Final{Histograms: col.Export(), Health: hl.read()})
	}
}

// withDefaults returns a copy of s with each role's missing parameters set
// to its behaviour's defaults (hand-built scenarios).
func withDefaults(s *scenario.Scenario) *scenario.Scenario {
	c := *s
	c.Roles = append([]scenario.Role(nil), s.Roles...)
	for i := range c.Roles {
		if c.Roles[i].Params == nil {
			if b, ok := scenario.LookupBehaviourFor(s.Service, c.Roles[i].Behaviour); ok && b.Params != nil {
				c.Roles[i].Params = b.Params()
			}
		}
	}
	if c.StreamsPerConn <= 0 {
		c.StreamsPerConn = 1
	}
	return &c
}

// dispatch feeds every event, in order, to the metrics and every checker.
// It owns r.col and r.checks until the channel is closed.
// After each batch it publishes the live figures and polls the live checks
// (see observed).
func (r *run) dispatch() {
	var at time.Duration
	for b := range r.events {
		for i := range b {
			r.judge.Observe(&b[i])
		}
		if r.opts.tap != nil {
			r.opts.tap.Events(b)
		}
		at = max(at, maxAt(b))
		r.observed(at, false)
		putBatch(b)
	}
	r.observed(at, true)
}

// flusher hands over partly filled batches every flushEvery, so that quiet
// clients' events reach the checkers promptly.
func (r *run) flusher(stop <-chan struct{}) {
	t := time.NewTicker(r.opts.flushEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, c := range r.clients {
				c.em.flush()
			}
			r.runEm.flush()
		}
	}
}

// schedule fires the plan's firings at their times. Each injection runs in
// its own goroutine (tracked by wg) so a slow fault does not delay the next.
func (r *run) schedule(ctx context.Context, wg *sync.WaitGroup) {
	for n, f := range r.plan.Firings {
		if !sleepUntil(ctx, nil, r.start.Add(f.At)) {
			return
		}
		step := &r.s.Faults[f.Step]
		var chosen []int
		switch {
		case step.Scope == fault.Stream:
			// This shard's share of the chosen clients (all when not sharded).
			for _, i := range f.Clients {
				if r.byIndex[i] != nil {
					chosen = append(chosen, i)
				}
			}
			if len(chosen) == 0 && len(f.Clients) > 0 {
				continue // all chosen clients run in other shards
			}
		case step.Scope == fault.ServerProcess && r.opts.shardIndex != 0:
			continue // one server, one killer: shard 0
		}
		flt, err := step.New()
		if err != nil {
			r.counters.faultFailed.Add(1)
			r.opts.log.Error("building fault", "fault", step.Fault, "line", step.Line, "err", err)
			continue
		}
		targets := make([]fault.Target, 0, len(chosen))
		for _, i := range chosen {
			c := r.byIndex[i]
			targets = append(targets, c)
			c.ev(&event.Event{Kind: event.Fault, Detail: step.Fault, Seq: uint64(n + 1)})
		}
		if len(chosen) == 0 {
			r.emitRun(&event.Event{Kind: event.Fault, Detail: step.Fault, Seq: uint64(n + 1)})
		}
		wg.Go(func() {
			if err := flt.Inject(ctx, r, targets); err != nil && ctx.Err() == nil {
				r.counters.faultFailed.Add(1)
				r.opts.log.Warn("fault failed", "fault", step.Fault, "err", err)
			}
		})
	}
}

// Proxy implements fault.Env.
func (r *run) Proxy() *toxiproxy.Proxy { return r.proxy }

// Server implements fault.Env.
func (r *run) Server() fault.Server {
	if r.opts.faultServer == nil {
		return nil
	}
	return watchedServer{Server: r.opts.faultServer, r: r}
}

// newRunID returns 12 random hex digits (see WithRunID).
func newRunID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
