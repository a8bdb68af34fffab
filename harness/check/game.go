package check

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/bidikit/bidikit/harness/event"
)

// gameRules is the "game-invariants" checker: per player, ticks strictly
// increase and a delta follows its previous update's tick by exactly one
// (see tickAnomaly), positions stay within the map, the last processed input never
// moves backwards, and no more inputs are processed than the per-tick limit
// allows (so inputs beyond the allowed rate are never applied). Each
// membership is judged by the rules its server announced in that player's
// Joined (see GameParams for what wins over them).
type gameRules struct {
	p GameParams
	// players holds each client's memberships by scope, so that a
	// Disconnect drops a client's players without scanning everyone's.
	players map[int]map[string]*playerState
	ticks   int
	// defaulted counts the memberships with ticks judged, for at least one
	// rule, by the reference defaults because their Joined announced none;
	// defaultedRules marks which rules (bit i: limits.src[i]).
	defaulted      int
	defaultedRules uint8
	// announced counts the memberships judged, for at least one rule, by
	// what their server announced about itself (not pinned in the params).
	announced int
	v         Verdict
}

// GameParams are rules a scenario sets explicitly for the checker. A field
// left out takes, per membership, the value the server announced in that
// player's Joined.rules, so a server is judged by the rules it announced (a
// bigger map, a longer step). A field set here wins over what the server
// announced: set it to hold a server to stricter (or different) rules than
// it claims. A rule neither set here nor announced (zero in Joined.rules, or
// no Joined observed) takes the reference server's default — 1000x1000 map,
// max_step 10, max_inputs_per_tick 4 — and the verdict's summary says so.
type GameParams struct {
	Width            *float64 `yaml:"width"`
	Height           *float64 `yaml:"height"`
	MaxInputsPerTick *uint64  `yaml:"max_inputs_per_tick"`
	MaxStep          *float64 `yaml:"max_step"`
}

// ruleSource says where a rule a membership is judged by came from.
type ruleSource uint8

const (
	fromDefault ruleSource = iota
	fromAnnounced
	fromParams
)

func (s ruleSource) String() string {
	switch s {
	case fromAnnounced:
		return "announced by the server"
	case fromParams:
		return "set in the check's parameters"
	}
	return "the reference default: the server announced none"
}

// limits are the rules one membership is judged by, each with its source.
type limits struct {
	width, height, maxStep float64
	maxInputs              uint64
	// src: width, height, max_step, max_inputs_per_tick
	src [4]ruleSource
}

// defaultLimits are the reference server's defaults (reference/game).
var defaultLimits = limits{width: 1000, height: 1000, maxStep: 10, maxInputs: 4}

// resolve picks each rule: explicit parameter, else the announced value in
// j (a Join event; nil: none observed) when positive, else the default.
func (p *GameParams) resolve(j *event.Event) limits {
	l := defaultLimits
	var aw, ah, as float64
	var ai uint64
	if j != nil {
		aw, ah, as, ai = j.X, j.Y, j.MaxStep, uint64(j.MaxInputs)
	}
	pickF := func(dst *float64, src *ruleSource, param *float64, announced float64) {
		switch {
		case param != nil:
			*dst, *src = *param, fromParams
		case announced > 0 && !math.IsInf(announced, 0):
			*dst, *src = announced, fromAnnounced
		}
	}
	pickF(&l.width, &l.src[0], p.Width, aw)
	pickF(&l.height, &l.src[1], p.Height, ah)
	pickF(&l.maxStep, &l.src[2], p.MaxStep, as)
	switch {
	case p.MaxInputsPerTick != nil:
		l.maxInputs, l.src[3] = *p.MaxInputsPerTick, fromParams
	case ai > 0:
		l.maxInputs, l.src[3] = ai, fromAnnounced
	}
	return l
}

// ruleNames name limits.src's rules, in order.
var ruleNames = [4]string{"width", "height", "max_step", "max_inputs_per_tick"}

// defaulted returns a bit per rule that fell back to the reference default.
func (l *limits) defaulted() uint8 {
	var m uint8
	for i, s := range l.src {
		if s == fromDefault {
			m |= 1 << i
		}
	}
	return m
}

// mapSource says where the map's size came from.
func (l *limits) mapSource() string {
	if l.src[0] == l.src[1] {
		return "map size " + l.src[0].String()
	}
	return fmt.Sprintf("width %s, height %s", l.src[0], l.src[1])
}

// value renders rule i of l.
func (l *limits) value(i int) string {
	switch i {
	case 0:
		return fmt.Sprint(l.width)
	case 1:
		return fmt.Sprint(l.height)
	case 2:
		return fmt.Sprint(l.maxStep)
	}
	return fmt.Sprint(l.maxInputs)
}

type playerState struct {
	rules     limits
	tick      uint64
	lastInput uint64
	// sent holds the input seqs this membership sent that no update has
	// covered yet (increasing; pruned at every update), so gaps in a
	// client's numbering — a reconnect keeps counting — are not mistaken
	// for processed inputs. nil until the first Send is observed.
	sent     []uint64
	sends    bool
	dropped  uint64 // dropped_inputs at the last update
	prevDrop uint64 // dropped_inputs before the update at which lastInput was reached
	x, y     float64
	seen     bool
	digest   uint64 // the last update's digest (Tick.SenderSeq)
}

func init() {
	Register("game-invariants", func(decode func(any) error) (Checker, error) {
		var p GameParams
		if err := decode(&p); err != nil {
			return nil, err
		}
		for _, f := range []struct {
			name string
			v    *float64
		}{{"width", p.Width}, {"height", p.Height}, {"max_step", p.MaxStep}} {
			if f.v != nil && !(*f.v > 0) {
				return nil, fmt.Errorf("game-invariants: %s must be positive, got %g (leave it out to use the rules the server announces)", f.name, *f.v)
			}
		}
		if p.MaxInputsPerTick != nil && *p.MaxInputsPerTick == 0 {
			return nil, fmt.Errorf("game-invariants: max_inputs_per_tick must be positive, got 0 (leave it out to use the rules the server announces)")
		}
		return &gameRules{p: p, players: map[int]map[string]*playerState{}, v: Verdict{Name: "game-invariants"}}, nil
	})
}

func (g *gameRules) Observe(e *event.Event) {
	k := memberKey{e.Client, e.Scope}
	switch e.Kind {
	case event.Join:
		g.set(k, &playerState{rules: g.p.resolve(e)})
	case event.Leave:
		if ps := g.players[k.client]; ps != nil {
			delete(ps, k.scope)
			if len(ps) == 0 {
				delete(g.players, k.client)
			}
		}
	case event.Disconnect:
		delete(g.players, e.Client)
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
		r := &p.rules
		who := clientName(e)
		if m := r.defaulted(); !p.seen && m != 0 {
			g.defaulted++
			g.defaultedRules |= m
		}
		if !p.seen && slices.Contains(r.src[:], fromAnnounced) {
			g.announced++
		}
		if e.X < 0 || e.Y < 0 || e.X > r.width || e.Y > r.height || math.IsNaN(e.X) || math.IsNaN(e.Y) {
			g.v.AddKind("outside the map", Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
				Detail: fmt.Sprintf("%s at (%.2f, %.2f) outside the %gx%g map at tick %d (%s)",
					who, e.X, e.Y, r.width, r.height, e.Seq, r.mapSource())})
		}
		if p.seen {
			if what := tickAnomaly(who, p.tick, p.digest, e); what != "" {
				g.v.AddKind("tick anomaly", Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At, Detail: what})
			}
			if e.LastInput < p.lastInput {
				g.v.AddKind("last input back", Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
					Detail: fmt.Sprintf("%s: last processed input went back from %d to %d at tick %d", who, p.lastInput, e.LastInput, e.Seq)})
			}
			if e.Seq > p.tick && e.LastInput > p.lastInput {
				jump := e.LastInput - p.lastInput
				if p.sends {
					jump = p.sentUpTo(e.LastInput)
				}
				ticks := e.Seq - p.tick
				allowed := ticks * r.maxInputs
				// Input seqs that last_input skipped were processed or
				// dropped. Drops reported in this update cover invalid
				// inputs below last_input and over-limit inputs above it;
				// over-limit drops reported in the previous update lie in
				// this gap too. Subtracting both gives a lower bound on the
				// inputs processed, so an honest server is never blamed.
				if processed := jump - min(jump, e.Dropped-min(e.Dropped, p.prevDrop)); processed > allowed {
					g.v.AddKind("inputs per tick", Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
						Detail: fmt.Sprintf("%s: at least %d inputs processed over %d tick(s) by tick %d (last input %d -> %d, %d dropped), limit %d per tick (%s)",
							who, processed, ticks, e.Seq, p.lastInput, e.LastInput, e.Dropped-min(e.Dropped, p.prevDrop), r.maxInputs, r.src[3])})
				}
				// At most min(jump, allowed) inputs moved the player, each at
				// most max_step.
				moved := math.Hypot(e.X-p.x, e.Y-p.y)
				steps := min(jump, allowed)
				if limit := float64(steps) * r.maxStep; moved > limit+1e-6 {
					g.v.AddKind("step too long", Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
						Detail: fmt.Sprintf("%s moved %.2f over %d tick(s) and at most %d input(s) by tick %d, at most %.2f allowed (max_step %g, %s)",
							who, moved, ticks, steps, e.Seq, limit, r.maxStep, r.src[2])})
				}
			} else if e.LastInput == p.lastInput && e.Full {
				// A full snapshot may correct a position; nothing moved by input.
			} else if e.LastInput == p.lastInput && math.Hypot(e.X-p.x, e.Y-p.y) > 1e-6 {
				g.v.AddKind("moved without input", Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
					Detail: fmt.Sprintf("%s moved from (%.2f, %.2f) to (%.2f, %.2f) with no input processed at tick %d", who, p.x, p.y, e.X, e.Y, e.Seq)})
			}
		}
		p.sentUpTo(e.LastInput)
		// prevDrop is the drop counter before the update at which
		// last_input reached its current value: every drop reported since
		// then is of an input above it, so it may lie in the next gap
		// (an update whose inputs were all dropped leaves last_input where
		// it was, and its drops belong to the gap that follows).
		prev := p.prevDrop
		switch {
		case !p.seen:
			prev = e.Dropped
		case e.LastInput != p.lastInput:
			prev = p.dropped
		}
		p.seen, p.tick, p.lastInput, p.prevDrop, p.dropped, p.x, p.y = true, e.Seq, e.LastInput, prev, e.Dropped, e.X, e.Y
		p.digest = e.SenderSeq
	}
}

// player returns k's state, creating it (judged by the parameters and the
// defaults: no Joined was observed for it).
func (g *gameRules) player(k memberKey) *playerState {
	p := g.players[k.client][k.scope]
	if p == nil {
		p = &playerState{rules: g.p.resolve(nil)}
		g.set(k, p)
	}
	return p
}

// set makes p k's state.
func (g *gameRules) set(k memberKey, p *playerState) {
	ps := g.players[k.client]
	if ps == nil {
		ps = map[string]*playerState{}
		g.players[k.client] = ps
	}
	ps[k.scope] = p
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
	if g.defaulted > 0 {
		var rules []string
		for i, n := range ruleNames {
			if g.defaultedRules&(1<<i) != 0 {
				rules = append(rules, n+" "+defaultLimits.value(i))
			}
		}
		g.v.Summary += fmt.Sprintf("; %d player membership(s) judged by the reference server's defaults (%s): their Joined announced no rules",
			g.defaulted, strings.Join(rules, ", "))
	}
	if g.announced > 0 {
		g.v.Summary += fmt.Sprintf("; %d player membership(s) judged by rules their server announced about itself (set width, height, max_step and max_inputs_per_tick in the check's params to hold a server to rules of yours)", g.announced)
	}
	return g.v
}
