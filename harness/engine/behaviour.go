package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/h2attack"
	"github.com/bidikit/bidikit/harness/scenario"
)

// newClient builds client i of the plan with its behaviour's driver and
// pacing. Behaviours are dispatched by name, one case each.
func newClient(r *run, i int) (*vclient, error) {
	cp := &r.plan.Clients[i]
	role := &r.s.Roles[cp.RoleIndex]
	beh, ok := scenario.Behaviours[role.Behaviour]
	if !ok {
		return nil, fmt.Errorf("role %q: unknown behaviour %q", role.Name, role.Behaviour)
	}
	c := &vclient{r: r, plan: cp, role: role, beh: beh,
		rng:   rand.New(rand.NewPCG(cp.Seed, uint64(cp.Index))),
		em:    emitter{out: r.events},
		cmds:  make(chan func(*writer) error, 16),
		stopC: make(chan struct{}),
		rate:  role.Rate,
	}
	if c.rate == 0 {
		c.rate = beh.DefaultRate
	}
	service := r.s.Service
	// honest builds the service's driver for a non-attacking client.
	var err error
	switch p := role.Params.(type) {
	case *scenario.ChatterParams:
		c.d = newChatDriver(c, p.BodyBytes, false)
	case *scenario.LurkerParams:
		c.d = newChatDriver(c, 1, false)
	case *scenario.TypistParams:
		c.d = newChatDriver(c, p.BodyBytes, true)
	case *scenario.ResumerParams:
		c.d = newChatDriver(c, p.BodyBytes, false)
		c.cycle, c.offline = p.ReconnectEvery, p.Offline
	case *scenario.EditorParams:
		c.d, err = newCollabDriver(c, p, false)
	case *scenario.PlayerParams:
		c.d = newGameDriver(c, p.StepFraction)
	case *scenario.FlooderParams:
		c.d, err = serviceDriver(c, service, p.BodyBytes, true)
	case *scenario.SlowReaderParams:
		c.d, err = serviceDriver(c, service, 1, false)
		c.readDelay = p.ReadDelay
	case *scenario.MalformedParams:
		c.d, err = serviceDriver(c, service, 1, false)
		c.act = func(w *writer, n int) error {
			for range n {
				c.ev(&event.Event{Kind: event.Send, Scope: c.plan.Scopes[0], Detail: "malformed"})
				if err := w.send(rawMessage(malformedBytes)); err != nil {
					return err
				}
			}
			return nil
		}
	case *scenario.OversizeParams:
		c.d, err = serviceDriver(c, service, 1, false)
		bytes := p.Bytes
		c.act = func(w *writer, n int) error {
			for range n {
				if err := c.d.oversized(w, bytes); err != nil {
					return err
				}
			}
			return nil
		}
	case *scenario.ReconnectStormParams, *scenario.OpenCancelParams:
		c.d, err = serviceDriver(c, service, 1, false)
	case h2attack.Params: // HTTP/2 attacks below gRPC (h2attack.go)
		c.d, err = serviceDriver(c, service, 1, false)
		if err == nil {
			err = checkH2Attack(c)
		}
	default:
		return nil, fmt.Errorf("role %q: behaviour %q has parameters of type %T", role.Name, role.Behaviour, role.Params)
	}
	if err != nil {
		return nil, fmt.Errorf("role %q: %w", role.Name, err)
	}
	if beh.Service != "" && beh.Service != service {
		return nil, fmt.Errorf("role %q: behaviour %q speaks %s, the scenario's service is %s", role.Name, role.Behaviour, beh.Service, service)
	}
	if c.act == nil {
		c.act = c.d.act
	}
	return c, nil
}

// serviceDriver is the driver attackers use on any service: a chat client,
// a collab editor or a player; flood makes it send blindly.
func serviceDriver(c *vclient, service string, bodyBytes int, flood bool) (driver, error) {
	switch service {
	case scenario.Chat:
		return newChatDriver(c, bodyBytes, false), nil
	case scenario.Collab:
		return newCollabDriver(c, nil, flood)
	case scenario.Game:
		return newGameDriver(c, 0.999), nil // just under max_step: full steps can round above it
	}
	return nil, fmt.Errorf("unknown service %q", service)
}

// runClient runs client c from its start time to its end time.
func (c *vclient) run(ctx context.Context) {
	if cd, ok := c.d.(*collabDriver); ok {
		defer cd.markFlushed() // an editor that stops for good never holds the others up
	}
	if !sleepUntil(ctx, c.stopC, c.r.start.Add(c.plan.StartAt)) {
		return
	}
	if c.beh.Attack {
		c.r.attackOnce.Do(func() {
			c.r.emitRun(&event.Event{Kind: event.Phase, Detail: "attack"})
		})
	}
	if p, ok := c.role.Params.(h2attack.Params); ok {
		c.runH2Attack(ctx, p)
		return
	}
	switch c.role.Behaviour {
	case "reconnect-storm":
		c.reconnectStorm(ctx)
	case "open-cancel":
		c.openCancel(ctx)
	default:
		c.runLoop(ctx)
	}
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

// reconnectStorm connects, joins, waits for the server's first answer and
// drops the stream (or the whole TCP connection when abrupt), at its rate.
func (c *vclient) reconnectStorm(ctx context.Context) {
	abrupt := false
	if p, ok := c.role.Params.(*scenario.ReconnectStormParams); ok {
		abrupt = p.Abrupt
	}
	c.paced(ctx, func() {
		cn, err := dial(c.r.pool.targetsFor(c.plan.Index), &c.r.opts)
		if err != nil {
			c.ev(&event.Event{Kind: event.Disconnect, Code: codes.Unavailable, Detail: err.Error()})
			return
		}
		defer cn.cc.Close()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		octx := metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+c.r.token(c.plan.User))
		desc, method := c.d.method()
		t0 := time.Now()
		st, err := cn.cc.NewStream(octx, desc, method)
		if err != nil {
			s := status.Convert(err)
			c.ev(&event.Event{Kind: event.Disconnect, Code: s.Code(), Detail: s.Message()})
			return
		}
		c.ev(&event.Event{Kind: event.Connect, Latency: time.Since(t0), Detail: cn.target()})
		w := &writer{c: c, st: st}
		if err := c.d.start(w); err == nil {
			m := c.d.recvMsg()
			if err := st.RecvMsg(m); err == nil {
				c.d.handle(m)
			}
		}
		code := codes.Canceled
		if abrupt {
			cn.closeRaw()
			code = codes.Unavailable
		}
		cancel()
		c.ev(&event.Event{Kind: event.Disconnect, Code: code, Detail: "reconnect-storm drop", Field: event.FieldClientEnd})
		c.d.ended()
	})
}

// openCancel opens streams on one connection and cancels each at once.
func (c *vclient) openCancel(ctx context.Context) {
	cn, err := c.r.pool.get(c.plan.Index)
	if err != nil {
		c.ev(&event.Event{Kind: event.Disconnect, Code: codes.Unavailable, Detail: err.Error()})
		return
	}
	defer c.r.pool.release(c.plan.Index)
	desc, method := c.d.method()
	c.paced(ctx, func() {
		sctx, cancel := context.WithCancel(ctx)
		octx := metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+c.r.token(c.plan.User))
		t0 := time.Now()
		_, err := cn.cc.NewStream(octx, desc, method)
		cancel()
		if err != nil {
			s := status.Convert(err)
			c.ev(&event.Event{Kind: event.Disconnect, Code: s.Code(), Detail: s.Message()})
			return
		}
		c.ev(&event.Event{Kind: event.Connect, Latency: time.Since(t0), Detail: cn.target()})
		c.ev(&event.Event{Kind: event.Disconnect, Code: codes.Canceled, Detail: "open-cancel", Field: event.FieldClientEnd})
	})
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
