package game

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	relayv1 "github.com/bidikit/bidikit/proto/bidikit/relay/v1"
)

// This file: a node, this instance's part in one shared match (join, leave,
// input forwarding); shared_relay.go has the relay side, shared_owner.go the
// owner's lease and link, shared_mirror.go the relay's copy of the state.

type nodeMode int

const (
	modeRelay nodeMode = iota
	modeOwner
	modeGone
)

// node is this instance's part in one shared match: either the owner (m, its
// loop, a lease renewer and the hub subscriptions for control requests and
// inputs) or a relay (a mirror of the match fed by the owner's Ticks, the
// local players, and a watchdog that takes the match over when the owner
// goes silent). A relay becomes the owner in place; sessions keep pointing
// at the node and their players.
//
// mu guards every field below it; it is taken by sessions (join, leave), the
// hub's Tick delivery goroutine, the watchdog and the owner loop's end, and
// never held while waiting on the network except for non-blocking
// publishes and subscription changes. Lock order: n.mu before s.mu.
type node struct {
	s    *Service
	name string
	done chan struct{} // closed when the node is gone
	wake chan struct{} // pokes the watchdog (buffered 1)

	mu      sync.Mutex
	mode    nodeMode
	joining int    // joins in progress (a relay with none and no players retires)
	m       *match // modeOwner

	// Relay mode.
	players    map[string]*player // this instance's players, by id
	mir        mirror
	highest    uint64    // highest tick seen from any owner
	owner      string    // the owner the last Tick came from
	lastTick   time.Time // when the last Tick arrived
	handover   bool      // the owner said it is closing
	syncing    bool      // a full-frame request is in flight
	claim      bool      // the owner changed: claim our players in the next batch
	forceFull  bool      // the next forwarded update must be full for every player
	stopFollow func()
}

// enter registers a join in progress; false when the node is gone.
func (n *node) enter() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mode == modeGone {
		return false
	}
	n.joining++
	return true
}

// exit ends a join in progress, retiring an empty relay.
func (n *node) exit() {
	n.mu.Lock()
	n.joining--
	retire := n.retireIfEmptyLocked()
	n.mu.Unlock()
	if retire {
		n.s.removeNode(n)
	}
}

func (n *node) retireIfEmptyLocked() bool {
	if n.mode != modeRelay || n.joining > 0 || len(n.players) > 0 {
		return false
	}
	n.retireLocked()
	return true
}

func (n *node) retireLocked() {
	n.mode = modeGone
	if n.stopFollow != nil {
		n.stopFollow()
		n.stopFollow = nil
	}
	close(n.done)
}

// startOwner makes n the owner of its match with lease own; seed (may be
// nil) prepares the match before its loop starts. Caller holds n.mu.
func (n *node) startOwner(own Ownership, seed func(*match)) error {
	m := newMatch(n.s, n.name)
	m.link = &ownerLink{node: n, own: own, lost: make(chan struct{})}
	if seed != nil {
		seed(m)
	}
	stop, err := n.s.hub.Serve(n.name, m.serveControl, m.serveInputs)
	if err != nil {
		return fmt.Errorf("serve match %q: %w", n.name, err)
	}
	m.link.stopServe = stop
	if !n.s.startLoops(m.run, m.renew) {
		stop()
		return errors.New("server shutting down")
	}
	n.mode = modeOwner
	n.m = m
	return nil
}

// startRelay makes n relay its match. Caller holds n.mu.
func (n *node) startRelay() error {
	stop, err := n.s.hub.Follow(n.name, n.onTick)
	if err != nil {
		return fmt.Errorf("follow match %q: %w", n.name, err)
	}
	if !n.s.startLoops(n.watch) {
		stop()
		return errors.New("server shutting down")
	}
	n.stopFollow = stop
	n.mode = modeRelay
	return nil
}

// join adds a player for ss: through the local loop when n owns the match,
// else by a request to the owner. retry says the error may pass when tried
// again (the match changed owner or closed meanwhile).
func (n *node) join(ctx context.Context, ss *session) (*player, *gamev1.Error, bool) {
	defer n.exit()
	n.mu.Lock()
	mode, m := n.mode, n.m
	n.mu.Unlock()
	switch mode {
	case modeOwner:
		r := request{kind: reqJoin, user: ss.user, out: ss.out, reply: make(chan reply, 1)}
		select {
		case m.reqs <- r:
			rep := <-r.reply
			return rep.p, rep.err, false
		case <-m.done:
			return nil, unavailable(n.name, "match %q closed while joining; try again", n.name), true
		case <-ctx.Done():
			return nil, &gamev1.Error{Code: uint32(codes.Canceled), Message: "stream ended", Field: "join.match", Match: n.name}, false
		}
	case modeRelay:
		return n.joinRemote(ctx, ss)
	}
	return nil, unavailable(n.name, "match %q closed while joining; try again", n.name), true
}

func (n *node) joinRemote(ctx context.Context, ss *session) (*player, *gamev1.Error, bool) {
	s := n.s
	req, _ := proto.Marshal(&relayv1.Control{Relay: s.hub.ID(), Op: &relayv1.Control_Join{Join: &relayv1.JoinRemote{User: ss.user}}})
	rctx, cancel := context.WithTimeout(ctx, s.hub.Lease())
	resp, err := s.hub.Request(rctx, n.name, req)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, &gamev1.Error{Code: uint32(codes.Canceled), Message: "stream ended", Field: "join.match", Match: n.name}, false
		}
		return nil, unavailable(n.name, "the owner instance of match %q could not be reached: %v", n.name, err), true
	}
	var rep relayv1.ControlReply
	var tu gamev1.TickUpdate
	if err := proto.Unmarshal(resp, &rep); err != nil {
		return nil, unavailable(n.name, "the owner instance of match %q sent an undecodable reply: %v", n.name, err), false
	}
	if e := rep.GetError(); e != nil {
		return nil, e, codes.Code(e.GetCode()) == codes.Unavailable
	}
	if err := proto.Unmarshal(rep.GetFrame(), &tu); err != nil || rep.GetJoined() == nil || !tu.GetFull() {
		return nil, unavailable(n.name, "the owner instance of match %q sent a join reply without a full update", n.name), false
	}
	id := rep.GetJoined().GetPlayerId()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mode != modeRelay || n.players[id] != nil {
		n.publishInputs(&relayv1.Inputs{Relay: s.hub.ID(), Left: []string{id}})
		return nil, unavailable(n.name, "match %q changed owner while joining; try again", n.name), true
	}
	p := &player{out: ss.out, state: &gamev1.PlayerState{PlayerId: id}, member: true}
	p.in.buf = make([]inputRec, 0, s.cfg.MaxInputsPerTick)
	n.players[id] = p
	if n.owner == "" {
		n.owner = rep.GetOwner()
	}
	if n.lastTick.IsZero() {
		n.lastTick = time.Now()
	}
	if !n.mir.valid || n.mir.tick <= tu.GetTick() {
		if n.mir.valid && len(n.players) > 1 {
			n.forceFull = true // the others may miss the ticks the mirror skips
		}
		n.mir.reset(&tu)
		n.highest = max(n.highest, tu.GetTick())
	}
	p.joinedTick = n.mir.tick
	ss.out.pushEvent(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Joined{Joined: rep.GetJoined()}}, nil)
	ss.out.pushFull(n.mir.fullFrame(n.name), personal{})
	s.memberJoined()
	return p, nil, false
}

// leave takes p out of the match (sending Left when notify).
func (n *node) leave(p *player, notify bool) {
	n.mu.Lock()
	if n.mode == modeOwner {
		m := n.m
		n.mu.Unlock()
		leave(m, p, notify)
		return
	}
	id := p.state.GetPlayerId()
	if !p.member || n.players[id] != p {
		n.mu.Unlock()
		return
	}
	n.dropLocked(p)
	if notify {
		p.out.pushEvent(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Left{Left: &gamev1.Left{Match: n.name}}}, nil)
	}
	n.publishInputs(&relayv1.Inputs{Relay: n.s.hub.ID(), Left: []string{id}})
	retire := n.retireIfEmptyLocked()
	n.mu.Unlock()
	if retire {
		n.s.removeNode(n)
	}
}

// dropLocked forgets a relayed player. Caller holds n.mu.
func (n *node) dropLocked(p *player) {
	delete(n.players, p.state.GetPlayerId())
	p.member = false
	n.s.memberLeft()
}

// publishInputs sends a batch to the owner without waiting.
func (n *node) publishInputs(in *relayv1.Inputs) {
	b, err := proto.Marshal(in)
	if err == nil {
		err = n.s.hub.PublishInputs(n.name, b)
	}
	if err != nil {
		n.s.log.Debug("game: publishing inputs", "match", n.name, "err", err)
	}
}
