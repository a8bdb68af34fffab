package game

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	relayv1 "github.com/bidikit/bidikit/proto/bidikit/relay/v1"
)

// This file: the owner side of a shared match: the owner link, lease
// renewal, and serving relays' requests and input batches.
// ownerLink is a shared match's tie to the cluster, owned by its loop
// (stopServe, lost: closed by the renewer).

type ownerLink struct {
	node      *node
	own       Ownership
	lost      chan struct{} // closed by renew when the lease is lost
	stopServe func()
}

// ended runs as the owner loop ends: the node is gone, the hub stops
// serving the match (the renewer then releases the lease).
func (l *ownerLink) ended(m *match) {
	l.stopServe()
	n := l.node
	n.mu.Lock()
	if n.m == m && n.mode == modeOwner {
		n.retireLocked()
	}
	n.mu.Unlock()
	n.s.removeNode(n)
}

// renew keeps the lease of m while its loop runs, then releases it unless
// it was lost. A renewal that fails with ErrLeaseLost, or failures for 2/3
// of a lease, lose the match: the loop ends its local players' streams.
func (m *match) renew() {
	defer m.s.loops.Done()
	own, lease := m.link.own, m.s.hub.Lease()
	t := time.NewTicker(lease / 3)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-m.done:
			releaseSoon(own, lease)
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), lease/3)
		err := own.Renew(ctx)
		cancel()
		if err == nil {
			last = time.Now()
			continue
		}
		if errors.Is(err, ErrLeaseLost) || time.Since(last) >= lease*2/3 {
			m.s.log.Warn("game: lost the ownership of a match", "match", m.name, "err", err)
			close(m.link.lost)
			<-m.done
			return
		}
		m.s.log.Debug("game: renewing a match lease", "match", m.name, "err", err)
	}
}

// lostOwnership ends the local players' streams: another instance may own
// the match now, so this loop must stop.
func (m *match) lostOwnership() {
	msg := fmt.Sprintf("match %q: this server instance lost the ownership of the match; rejoin", m.name)
	for _, p := range slices.Clone(m.players) {
		if p.rs == nil {
			p.out.pushEvent(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Error{Error: unavailable(m.name, "%s", msg)}}, status.Error(codes.Unavailable, msg))
		}
		m.remove(p)
	}
}

// serveControl answers a relay's request (on the hub's goroutine), handing
// it to the loop.
func (m *match) serveControl(data []byte) []byte {
	var c relayv1.Control
	rep := &relayv1.ControlReply{Owner: m.s.hub.ID()}
	if err := proto.Unmarshal(data, &c); err != nil {
		rep.Error = &gamev1.Error{Code: uint32(codes.InvalidArgument), Message: fmt.Sprintf("undecodable control request: %v", err), Match: m.name}
	} else {
		switch op := c.GetOp().(type) {
		case *relayv1.Control_Join:
			r := request{kind: reqRemoteJoin, user: op.Join.GetUser(), relay: c.GetRelay(), reply: make(chan reply, 1)}
			select {
			case m.reqs <- r:
				got := <-r.reply
				rep.Error, rep.Joined, rep.Frame = got.err, got.joined, got.full
			case <-m.done:
				rep.Error = unavailable(m.name, "match %q is closing on its owner instance; try again", m.name)
			}
		case *relayv1.Control_Sync:
			select {
			case m.reqs <- request{kind: reqSync}:
			case <-m.done:
			}
		default:
			rep.Error = &gamev1.Error{Code: uint32(codes.InvalidArgument), Message: "control request without an operation", Match: m.name}
		}
	}
	b, _ := proto.Marshal(rep)
	return b
}

// serveInputs hands a relay's batch to the loop (on the hub's goroutine).
func (m *match) serveInputs(data []byte) {
	var in relayv1.Inputs
	if err := proto.Unmarshal(data, &in); err != nil {
		m.s.log.Warn("game: undecodable input batch from a relay", "match", m.name, "err", err)
		return
	}
	select {
	case m.reqs <- request{kind: reqInputs, batch: &in}:
	case <-m.done:
	}
}

// takeBatch puts a relay's inputs into its players' inboxes (the per-tick
// limit applies there, as for local players) and notes who it still serves.
func (m *match) takeBatch(in *relayv1.Inputs) {
	for _, id := range in.GetLeft() {
		if p := m.byID[id]; p != nil && p.rs != nil && (p.rs.relay == in.GetRelay() || p.rs.relay == "") {
			m.remove(p)
		}
	}
	now := time.Now()
	for _, seat := range in.GetSeats() {
		p := m.byID[seat.GetPlayerId()]
		if p == nil || p.rs == nil {
			continue
		}
		switch p.rs.relay {
		case "":
			p.rs.relay = in.GetRelay()
		case in.GetRelay():
		default:
			continue // another relay serves this player
		}
		if c := seat.GetClaim(); c != nil && !p.rs.claimed && c.GetState().GetLastInput() >= p.state.GetLastInput() {
			st := c.GetState()
			p.state.X, p.state.Y = clamp(st.GetX(), m.s.cfg.Width), clamp(st.GetY(), m.s.cfg.Height)
			p.state.LastInput = st.GetLastInput()
			p.lastSent = c.GetLastInputSentUnixNanos()
			p.dropped = max(p.dropped, c.GetDroppedInputs())
			p.changed = true
		}
		p.rs.claimed = true
		p.rs.lastSeen = now
		for _, i := range seat.GetInputs() {
			p.in.put(inputRec{seq: i.GetSeq(), action: i.GetAction(), dx: i.GetDx(), dy: i.GetDy(), sent: i.GetClientSentUnixNanos()})
		}
		p.in.addOver(seat.GetOver())
	}
}

// expireRemote removes remote players no relay has named for a lease (their
// instance died, or nobody claimed them after a takeover).
func (m *match) expireRemote(now time.Time) {
	lease := m.s.hub.Lease()
	for _, p := range slices.Clone(m.players) {
		if p.rs != nil && now.Sub(p.rs.lastSeen) > lease {
			m.s.log.Info("game: remote player removed: its relay went silent", "match", m.name, "player", p.state.GetPlayerId(), "relay", p.rs.relay)
			m.remove(p)
		}
	}
}

// publish sends the relays this tick's frame f with the remote players'
// personal fields and pending events, without waiting.
func (m *match) publish(f *frame, handover bool) {
	t := &relayv1.Tick{Owner: m.s.hub.ID(), Tick: m.tick, Full: f.full, Frame: f.b, Handover: handover}
	add := func(p *player) {
		t.Players = append(t.Players, &relayv1.Personal{
			PlayerId: p.state.GetPlayerId(), LastInput: p.state.GetLastInput(),
			LastInputSentUnixNanos: p.lastSent, DroppedInputs: p.dropped,
			Events: p.rs.events, EndCode: uint32(p.rs.endCode), EndMessage: p.rs.endMsg,
		})
		p.rs.events = nil
	}
	for _, p := range m.players {
		if p.rs != nil {
			add(p)
		}
	}
	for _, p := range m.departed {
		add(p)
	}
	clear(m.departed)
	m.departed = m.departed[:0]
	b, err := proto.Marshal(t)
	if err == nil {
		err = m.s.hub.PublishTick(m.name, b)
	}
	if err != nil {
		m.s.log.Debug("game: publishing a tick", "match", m.name, "tick", m.tick, "err", err)
	}
}
