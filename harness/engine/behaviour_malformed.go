package engine

import (
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
)

// MalformedParams: at the role's rate sends bytes that are not a valid
// message, reconnecting after each stream the server ends.
type MalformedParams struct{}

func init() {
	registerBehaviour(scenario.Behaviour{Name: "malformed-sender", Attack: true, Summary: "sends undecodable messages", DefaultRate: 1},
		func() *MalformedParams { return &MalformedParams{} },
		func(c *vclient, _ *MalformedParams) (err error) {
			c.d, err = serviceDriver(c, 1, false)
			c.act = func(w Stream, n int) error {
				for range n {
					c.ev(&event.Event{Kind: event.Send, Scope: c.plan.Scopes[0], Detail: "malformed"})
					if err := w.Send(rawMessage(malformedBytes)); err != nil {
						return err
					}
				}
				return nil
			}
			return err
		}, nil)
}
