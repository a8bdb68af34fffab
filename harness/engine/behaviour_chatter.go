package engine

import "github.com/bidikit/bidikit/harness/scenario"

// ChatterParams: joins rooms and sends messages at the role's rate.
type ChatterParams struct {
	// BodyBytes is the message body size.
	BodyBytes int `yaml:"body_bytes"`
	// RoomsPerClient is how many of the role's rooms each client joins.
	RoomsPerClient int `yaml:"rooms_per_client"`
}

// ScopesPerClient implements scenario.Scoper.
func (p *ChatterParams) ScopesPerClient() int { return p.RoomsPerClient }

// CheckParams implements scenario.ParamsChecker.
func (p *ChatterParams) CheckParams(pc *scenario.ParamsCheck) {
	pc.BodyBytes("body_bytes", p.BodyBytes)
	pc.RoomsPerClient(p.RoomsPerClient)
}

func init() {
	registerBehaviour(scenario.Behaviour{Name: "chatter", Service: scenario.Chat, Summary: "joins rooms and sends messages", DefaultRate: 1},
		func() *ChatterParams { return &ChatterParams{BodyBytes: 32, RoomsPerClient: 1} },
		func(c *vclient, p *ChatterParams) error {
			c.d = newChatDriver(c, p.BodyBytes, false)
			return nil
		}, nil)
}
