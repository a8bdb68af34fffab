package engine

import (
	"time"

	"github.com/bidikit/bidikit/harness/scenario"
)

// ResumerParams: chats, and every ReconnectEvery ends its stream, stays
// away for Offline (so others' messages pile up to be replayed) and rejoins
// from its last seen position.
type ResumerParams struct {
	BodyBytes      int           `yaml:"body_bytes"`
	RoomsPerClient int           `yaml:"rooms_per_client"`
	ReconnectEvery time.Duration `yaml:"reconnect_every"`
	Offline        time.Duration `yaml:"offline"`
}

// ScopesPerClient implements scenario.Scoper.
func (p *ResumerParams) ScopesPerClient() int { return p.RoomsPerClient }

// CheckParams implements scenario.ParamsChecker.
func (p *ResumerParams) CheckParams(pc *scenario.ParamsCheck) {
	pc.BodyBytes("body_bytes", p.BodyBytes)
	pc.RoomsPerClient(p.RoomsPerClient)
	if p.ReconnectEvery <= 0 {
		pc.Bad("reconnect_every", "must be more than 0, got %s", p.ReconnectEvery)
	}
	if p.Offline < 0 || (p.ReconnectEvery > 0 && p.Offline >= p.ReconnectEvery) {
		pc.Bad("offline", "must be at least 0 and less than reconnect_every (%s), got %s", p.ReconnectEvery, p.Offline)
	}
}

func init() {
	registerBehaviour(scenario.Behaviour{Name: "resumer", Service: scenario.Chat, Summary: "chats and periodically reconnects, resuming from its last position", DefaultRate: 1},
		func() *ResumerParams {
			return &ResumerParams{BodyBytes: 32, RoomsPerClient: 1, ReconnectEvery: 5 * time.Second, Offline: 500 * time.Millisecond}
		},
		func(c *vclient, p *ResumerParams) error {
			c.d = newChatDriver(c, p.BodyBytes, false)
			c.cycle, c.offline = p.ReconnectEvery, p.Offline
			return nil
		}, nil)
}
