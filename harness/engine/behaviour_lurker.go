package engine

import "github.com/bidikit/bidikit/harness/scenario"

// LurkerParams: joins rooms and only reads.
type LurkerParams struct {
	RoomsPerClient int `yaml:"rooms_per_client"`
}

// ScopesPerClient implements scenario.Scoper.
func (p *LurkerParams) ScopesPerClient() int { return p.RoomsPerClient }

// CheckParams implements scenario.ParamsChecker.
func (p *LurkerParams) CheckParams(pc *scenario.ParamsCheck) { pc.RoomsPerClient(p.RoomsPerClient) }

func init() {
	registerBehaviour(scenario.Behaviour{Name: "lurker", Service: scenario.Chat, Summary: "joins rooms and only reads"},
		func() *LurkerParams { return &LurkerParams{RoomsPerClient: 1} },
		func(c *vclient, p *LurkerParams) error {
			c.d = newChatDriver(c, 1, false)
			return nil
		}, nil)
}
