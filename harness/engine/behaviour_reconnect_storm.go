package engine

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
)

// ReconnectStormParams: connects, joins, and disconnects at the role's rate
// (connections per second per client).
type ReconnectStormParams struct {
	// Abrupt closes the TCP connection without a goodbye instead of
	// cancelling the stream.
	Abrupt bool `yaml:"abrupt"`
}

func init() {
	registerBehaviour(scenario.Behaviour{Name: "reconnect-storm", Attack: true, Summary: "connects, joins and drops, over and over", DefaultRate: 5},
		func() *ReconnectStormParams { return &ReconnectStormParams{} },
		func(c *vclient, _ *ReconnectStormParams) (err error) {
			c.d, err = serviceDriver(c, 1, false)
			return err
		}, (*vclient).reconnectStorm)
}

// reconnectStorm connects, joins, waits for the server's first answer and
// drops the stream (or the whole TCP connection when abrupt), at its rate.
func (c *vclient) reconnectStorm(ctx context.Context) {
	abrupt := false
	if p, ok := c.role.Params.(*ReconnectStormParams); ok {
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
		octx := c.svc.outgoing(sctx, c.plan.User, c.r.token(c.plan.User))
		desc, method := c.svc.Desc, c.svc.Method
		t0 := time.Now()
		st, err := cn.cc.NewStream(octx, desc, method)
		if err != nil {
			s := status.Convert(err)
			e := &event.Event{Kind: event.Disconnect, Code: s.Code(), Detail: s.Message()}
			if sctx.Err() != nil {
				// The storm's own 2s limit ran out: not a status the server sent.
				e.Field, e.Detail = event.FieldClientEnd, "reconnect-storm: no stream within its 2s limit: "+s.Message()
			}
			c.ev(e)
			return
		}
		c.ev(&event.Event{Kind: event.Connect, Latency: time.Since(t0), Detail: cn.target()})
		w := &writer{c: c, st: st}
		if err := c.d.Start(w); err == nil {
			m := c.d.Message()
			if err := st.RecvMsg(m); err == nil {
				c.d.Handle(m)
			}
		}
		code := codes.Canceled
		if abrupt {
			cn.closeRaw()
			code = codes.Unavailable
		}
		cancel()
		c.ev(&event.Event{Kind: event.Disconnect, Code: code, Detail: "reconnect-storm drop", Field: event.FieldClientEnd})
		c.d.Ended()
	})
}
