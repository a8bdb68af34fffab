package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/registry"
)

// behaviourImpl is how the engine runs one registered behaviour.
type behaviourImpl struct {
	// build sets a new client up for its role's parameters: its driver,
	// and any pacing or paced action of its own.
	build func(c *vclient, params any) error
	// run, when set, replaces the client's stream loop (runLoop).
	run func(c *vclient, ctx context.Context)
}

// behaviourImpls are keyed by implKey: one name may have an implementation
// per service (chatter for chat and for custom).
var behaviourImpls = registry.New[behaviourImpl]("behaviour")

// implKey is a behaviour's key in behaviourImpls: its name for a behaviour
// of every service, "service/name" for one service's.
func implKey(service, name string) string {
	if service == "" {
		return name
	}
	return service + "/" + name
}

// registerBehaviour declares b to the scenario parser, with defaults as its
// parameter struct (P), and registers how the engine runs it: build sets a
// client up, run (optional) replaces its stream loop. Each behaviour calls
// it from the init of its own file (behaviour_*.go).
func registerBehaviour[P any](b scenario.Behaviour, defaults func() *P, build func(c *vclient, p *P) error, run func(c *vclient, ctx context.Context)) {
	b.Params = func() any { return defaults() }
	scenario.RegisterBehaviour(b)
	behaviourImpls.Register(implKey(b.Service, b.Name), behaviourImpl{run: run, build: func(c *vclient, params any) error {
		if params == nil {
			params = defaults()
		}
		p, ok := params.(*P)
		if !ok {
			return fmt.Errorf("behaviour %q has parameters of type %T, want %T", b.Name, params, p)
		}
		return build(c, p)
	}})
}

// RegisterBehaviour declares a behaviour whose clients speak the driver
// newDriver builds for them (b.Service names the service it belongs to; P
// is its parameter struct, defaults its default values; a P implementing
// scenario.ParamsChecker checks its values at parse time). It is how a
// protocol outside this package adds its honest behaviours; it panics on a
// duplicate name.
func RegisterBehaviour[P any](b scenario.Behaviour, defaults func() *P, newDriver func(c Client, p *P) (Driver, error)) {
	registerBehaviour(b, defaults, func(c *vclient, p *P) (err error) {
		if c.d, err = newDriver(c, p); err != nil {
			return err
		}
		if cy, ok := c.d.(Cycler); ok {
			c.cycle, c.offline = cy.Cycle()
		}
		return nil
	}, nil)
}

// newClient builds client i of the plan with its behaviour's driver and
// pacing.
func newClient(r *run, i int) (*vclient, error) {
	cp := &r.plan.Clients[i]
	role := &r.s.Roles[cp.RoleIndex]
	beh, ok := scenario.LookupBehaviourFor(r.s.Service, role.Behaviour)
	impl, implOK := behaviourImpls.Lookup(implKey(beh.Service, role.Behaviour))
	if !ok || !implOK {
		return nil, fmt.Errorf("role %q: unknown behaviour %q (known: %v)", role.Name, role.Behaviour, behaviourImpls.Names())
	}
	svc := r.svc
	if beh.Service != "" && beh.Service != r.s.Service {
		return nil, fmt.Errorf("role %q: behaviour %q speaks %s, the scenario's service is %s", role.Name, role.Behaviour, beh.Service, r.s.Service)
	}
	c := &vclient{r: r, plan: cp, role: role, beh: beh, impl: impl, svc: svc,
		rng:   rand.New(rand.NewPCG(cp.Seed, uint64(cp.Index))),
		em:    emitter{out: r.events, lag: &r.dispatchLag},
		cmds:  make(chan func(*writer) error, 16),
		stopC: make(chan struct{}),
		rate:  role.Rate,
	}
	if c.rate == 0 {
		c.rate = beh.DefaultRate
	}
	if err := impl.build(c, role.Params); err != nil {
		return nil, fmt.Errorf("role %q: %w", role.Name, err)
	}
	if c.act == nil {
		c.act = c.d.Act
	}
	return c, nil
}

// serviceDriver is the driver attackers use on the scenario's service
// (Service.Attacker); flood makes it send blindly.
func serviceDriver(c *vclient, bodyBytes int, flood bool) (Driver, error) {
	return c.svc.Attacker(c, bodyBytes, flood)
}

// runClient runs client c from its start time to its end time.
func (c *vclient) run(ctx context.Context) {
	if st, ok := c.d.(Stopper); ok {
		defer st.Stopped()
	}
	if !sleepUntil(ctx, c.stopC, c.r.start.Add(c.plan.StartAt)) {
		return
	}
	if c.beh.Attack {
		c.r.attackOnce.Do(func() {
			c.r.emitRun(&event.Event{Kind: event.Phase, Detail: "attack"})
		})
	}
	if c.impl.run != nil {
		c.impl.run(c, ctx)
		return
	}
	c.runLoop(ctx)
}

// sleepUntil waits for t; false when stop or ctx came first.
func sleepUntil(ctx context.Context, stop <-chan struct{}, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-stop:
		return false
	case <-ctx.Done():
		return false
	}
}

// paced calls f at the client's rate until its end time.
func (c *vclient) paced(ctx context.Context, f func()) {
	p := newPacer(time.Now(), max(c.rate, 0.1), c.rng)
	for {
		if !sleepUntil(ctx, c.stopC, time.Now().Add(p.wait(time.Now()))) {
			return
		}
		n, skipped := p.due(time.Now())
		if skipped > 0 {
			c.r.counters.behind.Add(int64(skipped))
		}
		for range n {
			if c.stopped() || ctx.Err() != nil {
				return
			}
			f()
		}
	}
}
