package engine

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
)

// OpenCancelParams: opens streams on one connection and cancels each at
// once, at the role's rate.
type OpenCancelParams struct{}

func init() {
	registerBehaviour(scenario.Behaviour{Name: "open-cancel", Attack: true, Summary: "opens streams and cancels them at once", DefaultRate: 50},
		func() *OpenCancelParams { return &OpenCancelParams{} },
		func(c *vclient, _ *OpenCancelParams) (err error) {
			c.d, err = serviceDriver(c, 1, false)
			return err
		}, (*vclient).openCancel)
}

// openCancel opens streams on one connection and cancels each at once.
func (c *vclient) openCancel(ctx context.Context) {
	cn, err := c.r.pool.get(c.plan.Index)
	if err != nil {
		c.ev(&event.Event{Kind: event.Disconnect, Code: codes.Unavailable, Detail: err.Error()})
		return
	}
	defer c.r.pool.release(c.plan.Index)
	desc, method := c.svc.Desc, c.svc.Method
	c.paced(ctx, func() {
		sctx, cancel := context.WithCancel(ctx)
		octx := c.svc.outgoing(sctx, c.plan.User, c.r.token(c.plan.User))
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
