package engine

import "github.com/bidikit/bidikit/harness/scenario"

// TypistParams: sends typing indicators and occasionally a message.
type TypistParams struct {
	BodyBytes      int `yaml:"body_bytes"`
	RoomsPerClient int `yaml:"rooms_per_client"`
}

// ScopesPerClient implements scenario.Scoper.
func (p *TypistParams) ScopesPerClient() int { return p.RoomsPerClient }

// CheckParams implements scenario.ParamsChecker.
func (p *TypistParams) CheckParams(pc *scenario.ParamsCheck) {
	pc.BodyBytes("body_bytes", p.BodyBytes)
	pc.RoomsPerClient(p.RoomsPerClient)
}

func init() {
	registerBehaviour(scenario.Behaviour{Name: "typist", Service: scenario.Chat, Summary: "sends typing indicators, sometimes a message", DefaultRate: 2},
		func() *TypistParams { return &TypistParams{BodyBytes: 32, RoomsPerClient: 1} },
		func(c *vclient, p *TypistParams) error {
			c.d = newChatDriver(c, p.BodyBytes, true)
			return nil
		}, nil)
}
