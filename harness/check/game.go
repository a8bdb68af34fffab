package check

import (
	"context"
	"fmt"
	"math"

	"github.com/bidikit/bidikit/harness/event"
)

// gameRules is the "game-invariants" checker: per player, ticks strictly
// increase, positions stay within the map, the last processed input never
// moves backwards, and no more inputs are processed than the per-tick limit
// allows (so inputs beyond the allowed rate are never applied).
type gameRules struct {
	p       GameParams
	players map[memberKey]*playerState
	ticks   int
	v       Verdict
}

// GameParams are the map and limits the checker holds the server to. They
// default to the reference server's defaults.
type GameParams struct {
	Width            float64 `yaml:"width"`
	Height           float64 `yaml:"height"`
	MaxInputsPerTick uint64  `yaml:"max_inputs_per_tick"`
	MaxStep          float64 `yaml:"max_step"`
}

type playerState struct {
	tick      uint64
	lastInput uint64
	x, y      float64
	seen      bool
}

func init() {
	Register("game-invariants", func(decode func(any) error) (Checker, error) {
		p := GameParams{Width: 1000, Height: 1000, MaxInputsPerTick: 4, MaxStep: 10}
		if err := decode(&p); err != nil {
			return nil, err
		}
		if p.Width <= 0 || p.Height <= 0 || p.MaxInputsPerTick == 0 || p.MaxStep <= 0 {
			return nil, fmt.Errorf("game-invariants: width, height, max_inputs_per_tick and max_step must be positive")
		}
		return &gameRules{p: p, players: map[memberKey]*playerState{}, v: Verdict{Name: "game-invariants"}}, nil
	})
}

func (g *gameRules) Observe(e *event.Event) {
	k := memberKey{e.Client, e.Scope}
	switch e.Kind {
	case event.Join, event.Disconnect, event.Leave:
		if e.Kind == event.Disconnect {
			for mk := range g.players {
				if mk.client == e.Client {
					delete(g.players, mk)
				}
			}
			return
		}
		delete(g.players, k)
	case event.Tick:
		g.ticks++
		p := g.players[k]
		if p == nil {
			p = &playerState{}
			g.players[k] = p
		}
		who := clientName(e)
		if e.X < 0 || e.Y < 0 || e.X > g.p.Width || e.Y > g.p.Height || math.IsNaN(e.X) || math.IsNaN(e.Y) {
			g.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
				Detail: fmt.Sprintf("%s at (%.2f, %.2f) outside the %gx%g map at tick %d", who, e.X, e.Y, g.p.Width, g.p.Height, e.Seq)})
		}
		if p.seen {
			if e.Seq <= p.tick {
				g.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
					Detail: fmt.Sprintf("%s got tick %d after tick %d", who, e.Seq, p.tick)})
			}
			if e.LastInput < p.lastInput {
				g.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
					Detail: fmt.Sprintf("%s: last processed input went back from %d to %d at tick %d", who, p.lastInput, e.LastInput, e.Seq)})
			}
			if e.Seq > p.tick && e.LastInput > p.lastInput {
				allowed := (e.Seq - p.tick) * g.p.MaxInputsPerTick
				if e.LastInput-p.lastInput > allowed {
					g.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
						Detail: fmt.Sprintf("%s: %d inputs processed over %d tick(s), limit %d per tick", who, e.LastInput-p.lastInput, e.Seq-p.tick, g.p.MaxInputsPerTick)})
				}
				moved := math.Hypot(e.X-p.x, e.Y-p.y)
				if limit := float64(e.LastInput-p.lastInput) * g.p.MaxStep; moved > limit+1e-6 {
					g.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
						Detail: fmt.Sprintf("%s moved %.2f over %d input(s), at most %.2f allowed", who, moved, e.LastInput-p.lastInput, limit)})
				}
			} else if e.LastInput == p.lastInput && e.Full {
				// A full snapshot may correct a position; nothing moved by input.
			} else if e.LastInput == p.lastInput && math.Hypot(e.X-p.x, e.Y-p.y) > 1e-6 {
				g.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
					Detail: fmt.Sprintf("%s moved from (%.2f, %.2f) to (%.2f, %.2f) with no input processed", who, p.x, p.y, e.X, e.Y)})
			}
		}
		p.seen, p.tick, p.lastInput, p.x, p.y = true, e.Seq, e.LastInput, e.X, e.Y
	}
}

func (g *gameRules) Verdict(context.Context, Env) Verdict {
	if g.ticks == 0 {
		g.v.Status = NotMeasurable
		g.v.Summary = "no game ticks observed"
		return g.v
	}
	summarise(&g.v, fmt.Sprintf("%d player updates kept every rule", g.ticks),
		"%d player updates broke the game's rules", g.v.Violations)
	return g.v
}
