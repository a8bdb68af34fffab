package game

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	relayv1 "github.com/bidikit/bidikit/proto/bidikit/relay/v1"
)

// This file: a relaying node's side of a shared match: the owner's Ticks
// delivered to local players, input batches, the watchdog and takeover.
// onTick handles one Tick of the owner (on the hub's delivery goroutine):
// it updates the mirror, delivers events and the update to each local
// player, then sends the owner the inputs gathered since the last Tick.

func (n *node) onTick(data []byte) {
	var t relayv1.Tick
	var tu gamev1.TickUpdate
	if err := proto.Unmarshal(data, &t); err != nil {
		n.s.log.Warn("game: undecodable Tick from the match owner", "match", n.name, "err", err)
		return
	}
	if err := proto.Unmarshal(t.GetFrame(), &tu); err != nil {
		n.s.log.Warn("game: undecodable tick frame from the match owner", "match", n.name, "err", err)
		return
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mode != modeRelay {
		return
	}
	n.lastTick = now
	if t.GetOwner() != n.owner {
		n.claim = n.owner != ""
		n.owner = t.GetOwner()
	}
	if t.GetHandover() {
		n.handover = true
		select {
		case n.wake <- struct{}{}:
		default:
		}
	} else {
		n.handover = false
	}
	if t.GetTick() <= n.highest {
		return // stale, or an older numbering
	}
	n.highest = t.GetTick()
	switch {
	case tu.GetFull():
		n.mir.reset(&tu)
	case n.mir.valid && tu.GetTick() == n.mir.tick+1:
		n.mir.apply(&tu)
	default:
		n.mir.valid = false
		if len(n.players) > 0 {
			n.requestSyncLocked()
		}
	}
	cur := make(map[string]*relayv1.Personal, len(n.players))
	for _, per := range t.GetPlayers() {
		id := per.GetPlayerId()
		if n.players[id] != nil {
			cur[id] = per
		}
		// Kept (without events) for a takeover.
		n.mir.pers[id] = &relayv1.Personal{PlayerId: id, LastInput: per.GetLastInput(), LastInputSentUnixNanos: per.GetLastInputSentUnixNanos(), DroppedInputs: per.GetDroppedInputs()}
	}
	f := &frame{b: t.GetFrame(), tick: t.GetTick(), full: tu.GetFull()}
	fullFn := func() *frame { return n.mir.fullFrame(n.name) }
	if n.forceFull && n.mir.valid {
		f = fullFn()
		n.forceFull = false
	}
	for id, p := range n.players {
		if t.GetTick() <= p.joinedTick {
			continue
		}
		per := cur[id]
		if per == nil {
			msg := fmt.Sprintf("match %q: the owner instance no longer has this player (its owner changed or it timed out); rejoin", n.name)
			p.out.pushEvent(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Error{Error: unavailable(n.name, "%s", msg)}}, status.Error(codes.Unavailable, msg))
			n.dropLocked(p)
			continue
		}
		evs := per.GetEvents()
		for i, ev := range evs {
			var end error
			if i == len(evs)-1 && per.GetEndCode() != 0 {
				end = status.Error(codes.Code(per.GetEndCode()), per.GetEndMessage())
			}
			if ev.GetError() != nil && end == nil {
				p.out.pushEventIfIdle(ev)
			} else {
				p.out.pushEvent(ev, end)
			}
		}
		if per.GetEndCode() != 0 {
			n.dropLocked(p)
			continue
		}
		p.state.LastInput, p.lastSent, p.dropped = per.GetLastInput(), per.GetLastInputSentUnixNanos(), per.GetDroppedInputs()
		if n.mir.valid {
			p.out.pushTick(f, fullFn, p.personal())
		}
	}
	n.flushLocked()
}

// flushLocked sends the owner one batch: every local player's queued
// inputs (with claims after an owner change). Caller holds n.mu.
func (n *node) flushLocked() {
	if len(n.players) == 0 {
		return
	}
	batch := &relayv1.Inputs{Relay: n.s.hub.ID(), Seats: make([]*relayv1.Seat, 0, len(n.players))}
	for id, p := range n.players {
		var over uint64
		p.batch, over = p.in.take(p.batch[:0])
		seat := &relayv1.Seat{PlayerId: id, Over: over}
		for _, in := range p.batch {
			seat.Inputs = append(seat.Inputs, &gamev1.Input{Seq: in.seq, Action: in.action, Dx: in.dx, Dy: in.dy, ClientSentUnixNanos: in.sent})
		}
		clear(p.batch)
		if n.claim {
			if st := n.mir.states[id]; st != nil {
				seat.Claim = &relayv1.Claim{Tick: n.mir.tick, State: st, LastInputSentUnixNanos: p.lastSent, DroppedInputs: p.dropped}
			}
		}
		batch.Seats = append(batch.Seats, seat)
	}
	n.claim = false
	n.publishInputs(batch)
}

// requestSyncLocked asks the owner, in the background, for a full frame.
func (n *node) requestSyncLocked() {
	if n.syncing {
		return
	}
	n.syncing = true
	ok := n.s.goBg(func() {
		req, _ := proto.Marshal(&relayv1.Control{Relay: n.s.hub.ID(), Op: &relayv1.Control_Sync{Sync: &relayv1.SyncRequest{}}})
		ctx, cancel := context.WithTimeout(context.Background(), n.s.hub.Lease())
		_, err := n.s.hub.Request(ctx, n.name, req)
		cancel()
		if err != nil {
			n.s.log.Debug("game: asking the match owner for a full frame", "match", n.name, "err", err)
		}
		n.mu.Lock()
		n.syncing = false
		n.mu.Unlock()
	})
	if !ok {
		n.syncing = false
	}
}

// watch is a relay's watchdog: when the owner has sent no Tick for a lease
// (or handed the match over) while local players are in it, it claims the
// lease and takes the match over. It ends when the node retires or becomes
// the owner, or the service closes (then it ends the local players' streams).
func (n *node) watch() {
	defer n.s.loops.Done()
	lease := n.s.hub.Lease()
	t := time.NewTicker(lease / 10)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-n.s.stop:
			n.closeRelay()
			return
		case <-t.C:
		case <-n.wake:
		}
		n.mu.Lock()
		due := n.mode == modeRelay && len(n.players) > 0 && (n.handover || time.Since(n.lastTick) > lease)
		n.mu.Unlock()
		if !due {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), lease)
		own, ok, err := n.s.hub.Claim(ctx, n.name)
		cancel()
		if err != nil {
			n.s.log.Warn("game: claiming a silent match", "match", n.name, "err", err)
			continue
		}
		if ok && n.takeOver(own) {
			return
		}
	}
}

// takeOver turns the relay into the owner with lease own, seeding the match
// from the mirror. False (lease released) when the node has nothing to own.
func (n *node) takeOver(own Ownership) bool {
	n.mu.Lock()
	if n.mode != modeRelay || len(n.players) == 0 {
		n.mu.Unlock()
		releaseSoon(own, n.s.hub.Lease())
		return false
	}
	cfg := n.s.cfg
	skipped := uint64(time.Since(n.lastTick).Seconds() * float64(cfg.TickRate))
	tick := n.highest + max(1, skipped)
	locals := n.players
	seed := func(m *match) {
		m.tick = tick
		m.fullNext = true
		now := time.Now()
		var maxID uint64
		add := func(p *player) {
			m.players = append(m.players, p)
			m.byID[p.state.GetPlayerId()] = p
			if i := strings.LastIndexByte(p.state.GetPlayerId(), '#'); i >= 0 {
				if v, err := strconv.ParseUint(p.state.GetPlayerId()[i+1:], 10, 64); err == nil {
					maxID = max(maxID, v)
				}
			}
		}
		for _, id := range n.mir.order {
			st := proto.CloneOf(n.mir.states[id])
			if p := locals[id]; p != nil {
				st.LastInput = max(st.LastInput, p.state.LastInput)
				p.state, p.changed = st, true
				add(p)
				continue
			}
			q := &player{state: st, rs: &remoteSeat{lastSeen: now}, member: true, changed: true}
			q.in.buf = make([]inputRec, 0, cfg.MaxInputsPerTick)
			if per := n.mir.pers[id]; per != nil {
				q.lastSent, q.dropped = per.GetLastInputSentUnixNanos(), per.GetDroppedInputs()
			}
			add(q)
		}
		for id, p := range locals { // joined after the mirror's last full view
			if m.byID[id] == nil {
				p.state = &gamev1.PlayerState{PlayerId: id, X: cfg.Width / 2, Y: cfg.Height / 2, LastInput: p.state.LastInput}
				p.changed = true
				add(p)
			}
		}
		// Players the old owner added after our last view may hold the
		// next ids: leave room.
		m.nextID = maxID + uint64(cfg.MaxPlayers)
	}
	if err := n.startOwner(own, seed); err != nil {
		n.mu.Unlock()
		n.s.log.Warn("game: taking over a silent match", "match", n.name, "err", err)
		releaseSoon(own, n.s.hub.Lease())
		return false
	}
	if n.stopFollow != nil {
		n.stopFollow()
		n.stopFollow = nil
	}
	n.players = nil
	n.mu.Unlock()
	n.s.log.Info("game: took over match from a silent owner", "match", n.name, "tick", tick, "local_players", len(locals))
	return true
}

// closeRelay ends the local players' streams because the service closes.
func (n *node) closeRelay() {
	n.mu.Lock()
	if n.mode != modeRelay {
		n.mu.Unlock()
		return
	}
	left := make([]string, 0, len(n.players))
	for id, p := range n.players {
		p.out.pushEvent(shutdownKick(n.name), errShuttingDown)
		n.dropLocked(p)
		left = append(left, id)
	}
	if len(left) > 0 {
		n.publishInputs(&relayv1.Inputs{Relay: n.s.hub.ID(), Left: left})
	}
	n.retireLocked()
	n.mu.Unlock()
	n.s.removeNode(n)
}
