package game

import (
	"slices"

	"google.golang.org/protobuf/proto"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	relayv1 "github.com/bidikit/bidikit/proto/bidikit/relay/v1"
)

// mirror is a relay's copy of the match state, rebuilt from the owner's
// frames; owned by the node under its mutex.
type mirror struct {
	valid  bool // a full frame and every delta since were applied
	tick   uint64
	nanos  int64
	order  []string // join order
	states map[string]*gamev1.PlayerState
	pers   map[string]*relayv1.Personal // remote players' personal fields, last seen
	full   *frame                       // full frame of tick, built on demand
}

func (mr *mirror) reset(tu *gamev1.TickUpdate) {
	mr.order = mr.order[:0]
	clear(mr.states)
	for _, p := range tu.GetPlayers() {
		mr.order = append(mr.order, p.GetPlayerId())
		mr.states[p.GetPlayerId()] = p
	}
	for id := range mr.pers {
		if mr.states[id] == nil {
			delete(mr.pers, id)
		}
	}
	mr.tick, mr.nanos, mr.valid, mr.full = tu.GetTick(), tu.GetServerUnixNanos(), true, nil
}

func (mr *mirror) apply(tu *gamev1.TickUpdate) {
	for _, p := range tu.GetPlayers() {
		if mr.states[p.GetPlayerId()] == nil {
			mr.order = append(mr.order, p.GetPlayerId())
		}
		mr.states[p.GetPlayerId()] = p
	}
	for _, id := range tu.GetRemoved() {
		if mr.states[id] != nil {
			delete(mr.states, id)
			delete(mr.pers, id)
			mr.order = slices.DeleteFunc(mr.order, func(s string) bool { return s == id })
		}
	}
	mr.tick, mr.nanos, mr.full = tu.GetTick(), tu.GetServerUnixNanos(), nil
}

// fullFrame returns the encoded full TickUpdate of the mirror's tick.
func (mr *mirror) fullFrame(match string) *frame {
	if mr.full != nil {
		return mr.full
	}
	tu := &gamev1.TickUpdate{Match: match, Tick: mr.tick, Full: true, ServerUnixNanos: mr.nanos}
	for _, id := range mr.order {
		tu.Players = append(tu.Players, mr.states[id])
	}
	b, _ := proto.Marshal(tu) // cannot fail for these field types
	mr.full = &frame{b: b, tick: mr.tick, full: true}
	return mr.full
}
