package engine

import (
	"context"
	"fmt"
	"reflect"

	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/h2attack"
	"github.com/bidikit/bidikit/harness/scenario"
)

// This file adapts harness/h2attack's HTTP/2 attacks to virtual clients:
// a client of a role whose behaviour is an attack (rapid-reset,
// ping-flood, ...) runs it from its start time to its end time on raw
// HTTP/2 connections of its own to its target, and every observation
// becomes an event.Attack event (Field = what happened: start, goaway, rst,
// closed, write-blocked, stop). It opens no gRPC stream, so it emits no
// Connect or Disconnect: the checks that judge streams do not see it.

// WithAllowRemoteAttacks lets HTTP/2 attack roles target an address that
// is not loopback (127.0.0.0/8, ::1). Without it, a scenario with such a
// role fails before any client starts when the target is remote. Only for
// servers you own, on your own network.
//
//	engine.Run(ctx, s, engine.WithTarget("10.0.0.5:7070"), engine.WithAllowRemoteAttacks())
func WithAllowRemoteAttacks() Option {
	return func(o *options) error { o.allowRemoteAttacks = true; return nil }
}

// h2Target is the target client i attacks: its own first target (as its
// gRPC connection would prefer), never the fault proxy.
func (r *run) h2Target(i int) h2attack.Target {
	ts := r.opts.targets
	return h2attack.Target{Addr: ts[i%len(ts)], TLS: r.opts.tlsCfg, AllowRemote: r.opts.allowRemoteAttacks,
		DialTimeout: r.opts.dialTimeout}
}

// checkH2Attack refuses, before anything starts, an attack role whose
// target is not loopback while remote attacks are not allowed.
func checkH2Attack(c *vclient) error {
	if err := h2attack.CheckTarget(context.Background(), c.r.h2Target(c.plan.Index)); err != nil {
		return fmt.Errorf("behaviour %q: %w", c.role.Behaviour, err)
	}
	return nil
}

// h2Request is what the attack's streams ask for: the service's bidi
// method with the client's token, and the messages its driver's Start sends
// (a chat Join, a collab Open, a game JoinMatch of its scopes), so that
// streams held open (zero-window, stream-hold) have a server side that
// answers.
func (c *vclient) h2Request() (h2attack.Request, error) {
	req := h2attack.Request{Path: c.svc.Method, Metadata: c.svc.headerPairs(c.plan.User, c.r.token(c.plan.User))}
	var start capture
	if err := c.d.Start(&start); err != nil {
		return req, fmt.Errorf("encoding the attack's join messages: %w", err)
	}
	req.Messages = start.msgs
	return req, nil
}

// capture is a Stream that keeps the encoding of every message sent.
type capture struct{ msgs [][]byte }

// Send implements Stream.
func (c *capture) Send(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	b, err := proto.Marshal(pm)
	if err != nil {
		return err
	}
	c.msgs = append(c.msgs, b)
	return nil
}

// runH2Attack runs the client's attack until its end time (stopC) or ctx;
// the attack's own duration and count bound it too.
func (c *vclient) runH2Attack(ctx context.Context, p h2attack.Params) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.stopC:
			cancel()
		case <-actx.Done():
		}
	}()
	p = cloneParams(p) // the role's params are shared by its clients
	p.SetRate(c.rate)
	req, err := c.h2Request()
	if err == nil {
		_, err = p.Run(actx, c.r.h2Target(c.plan.Index), req, c.h2Report)
	}
	if err != nil && actx.Err() == nil {
		c.ev(&event.Event{Kind: event.Attack, Scope: c.role.Behaviour, Field: event.AttackStop,
			Detail: fmt.Sprintf("%s could not run: %v", c.role.Behaviour, err)})
		c.r.opts.log.Warn("HTTP/2 attack failed", "role", c.role.Name, "client", c.plan.Index, "err", err)
	}
}

// h2Report turns an observation into an event.Attack event (safe for
// concurrent use: the emitter is).
func (c *vclient) h2Report(o h2attack.Observation) {
	e := &event.Event{Kind: event.Attack, Scope: o.Attack, Field: string(o.Kind), Detail: o.Detail,
		Seq: uint64(max(o.Frames, 0)), Latency: o.After, SenderSeq: uint64(max(o.Count, 0)), Text: o.Debug}
	switch o.Kind {
	case h2attack.Started:
		e.Field = event.AttackStart
	case h2attack.Stopped:
		e.Field = event.AttackStop
	case h2attack.GoAway, h2attack.Resets:
		e.MsgID = o.Code.String()
	}
	c.ev(e)
}

// cloneParams returns a copy of p (a pointer to a params struct).
func cloneParams(p h2attack.Params) h2attack.Params {
	v := reflect.ValueOf(p)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return p
	}
	cp := reflect.New(v.Elem().Type())
	cp.Elem().Set(v.Elem())
	if q, ok := cp.Interface().(h2attack.Params); ok {
		return q
	}
	return p
}

// The HTTP/2 attacks of harness/h2attack are attack behaviours for any
// service: each client of such a role runs the attack (with its params'
// connections) from the role's start to its stop, on raw HTTP/2
// connections of its own next to the gRPC clients. The role's rate is the
// attack's pace (frames or streams per second per connection); its
// default is the attack's.
func init() {
	for name, a := range h2attack.Attacks {
		scenario.RegisterBehaviour(scenario.Behaviour{Name: name, Attack: true, Summary: a.Summary, DefaultRate: a.Params().Pace(),
			Params: func() any { return a.Params() }})
		behaviourImpls.Register(name, behaviourImpl{
			build: func(c *vclient, params any) (err error) {
				if params == nil {
					params = a.Params()
				}
				if _, ok := params.(h2attack.Params); !ok {
					return fmt.Errorf("behaviour %q has parameters of type %T", name, params)
				}
				if c.d, err = serviceDriver(c, 1, false); err != nil {
					return err
				}
				return checkH2Attack(c)
			},
			run: func(c *vclient, ctx context.Context) { c.runH2Attack(ctx, c.role.Params.(h2attack.Params)) },
		})
	}
}
