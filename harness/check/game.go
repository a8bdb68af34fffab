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
	// sent holds the input seqs this membership sent that no update has
	// covered yet (increasing; pruned at every update), so gaps in a
	// client's numbering — a reconnect keeps counting — are not mistaken
	// for processed inputs. nil until the first Send is observed.
	sent     []uint64
	sends    bool
	dropped  uint64 // dropped_inputs at the last update
	prevDrop uint64 // dropped_inputs at the update before it
	x, y     float64
	seen     bool
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
	case event.Send:
		if e.SenderSeq == 0 {
			return
		}
		p := g.player(k)
		p.sends = true
		p.sent = append(p.sent, e.SenderSeq)
	case event.Tick:
		g.ticks++
		p := g.player(k)
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
				jump := e.LastInput - p.lastInput
				if p.sends {
					jump = p.sentUpTo(e.LastInput)
				}
				ticks := e.Seq - p.tick
				allowed := ticks * g.p.MaxInputsPerTick
				// Input seqs that last_input skipped were processed or
				// dropped. Drops reported in this update cover invalid
				// inputs below last_input and over-limit inputs above it;
				// over-limit drops reported in the previous update lie in
				// this gap too. Subtracting both gives a lower bound on the
				// inputs processed, so an honest server is never blamed.
				if processed := jump - min(jump, e.Dropped-min(e.Dropped, p.prevDrop)); processed > allowed {
					g.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
						Detail: fmt.Sprintf("%s: at least %d inputs processed over %d tick(s) (last input %d -> %d, %d dropped), limit %d per tick",
							who, processed, ticks, p.lastInput, e.LastInput, e.Dropped-min(e.Dropped, p.prevDrop), g.p.MaxInputsPerTick)})
				}
				// At most min(jump, allowed) inputs moved the player, each at
				// most max_step.
				moved := math.Hypot(e.X-p.x, e.Y-p.y)
				steps := min(jump, allowed)
				if limit := float64(steps) * g.p.MaxStep; moved > limit+1e-6 {
					g.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
						Detail: fmt.Sprintf("%s moved %.2f over %d tick(s) and at most %d input(s), at most %.2f allowed", who, moved, ticks, steps, limit)})
				}
			} else if e.LastInput == p.lastInput && e.Full {
				// A full snapshot may correct a position; nothing moved by input.
			} else if e.LastInput == p.lastInput && math.Hypot(e.X-p.x, e.Y-p.y) > 1e-6 {
				g.v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
					Detail: fmt.Sprintf("%s moved from (%.2f, %.2f) to (%.2f, %.2f) with no input processed", who, p.x, p.y, e.X, e.Y)})
			}
		}
		p.sentUpTo(e.LastInput)
		prev := p.dropped
		if !p.seen {
			prev = e.Dropped
		}
		p.seen, p.tick, p.lastInput, p.prevDrop, p.dropped, p.x, p.y = true, e.Seq, e.LastInput, prev, e.Dropped, e.X, e.Y
	}
}

// player returns k's state, creating it.
func (g *gameRules) player(k memberKey) *playerState {
	p := g.players[k]
	if p == nil {
		p = &playerState{}
		g.players[k] = p
	}
	return p
}

// sentUpTo removes and counts the sent seqs <= last.
func (p *playerState) sentUpTo(last uint64) uint64 {
	n := 0
	for n < len(p.sent) && p.sent[n] <= last {
		n++
	}
	p.sent = append(p.sent[:0], p.sent[n:]...)
	return uint64(n)
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
