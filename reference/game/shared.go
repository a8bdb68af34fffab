package game

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	relayv1 "github.com/bidikit/bidikit/proto/bidikit/relay/v1"
	"github.com/bidikit/bidikit/reference/metrics"
)

// MatchHub is what a shared Service needs from the cluster (package gamehub
// implements it over NATS): one ownership lease per match, and three kinds
// of messages per match, all opaque bytes (proto bidikit.relay.v1):
// requests from relays to the owner (Control -> ControlReply), relays'
// input batches to the owner (Inputs) and the owner's Tick to every relay.
// Delivery is at most once; the Service repairs gaps. Methods are safe for
// concurrent use; none may block for long except Claim and Request, which
// honour ctx.
type MatchHub interface {
	// ID names this instance in the cluster, unique among running instances.
	ID() string
	// Lease is how long an ownership lasts without renewal.
	Lease() time.Duration
	// Claim tries to become match's owner: ok is false (and err nil) when
	// another instance holds the lease.
	Claim(ctx context.Context, match string) (own Ownership, ok bool, err error)
	// Serve delivers, until stop, the owner's side of match: control
	// requests to control (its result is the reply; it may block for a
	// tick) and input batches to inputs. Each is called from one goroutine.
	Serve(match string, control func(req []byte) []byte, inputs func(batch []byte)) (stop func(), err error)
	// Follow delivers match's Tick messages to fn, one at a time, until stop.
	Follow(match string, fn func(tick []byte)) (stop func(), err error)
	// Request sends a control request to match's owner and returns its
	// reply; ErrNoOwner (wrapped) when no instance serves the match.
	Request(ctx context.Context, match string, req []byte) ([]byte, error)
	// PublishTick and PublishInputs send without waiting for anyone.
	PublishTick(match string, tick []byte) error
	PublishInputs(match string, batch []byte) error
}

// Ownership is a held match lease. Renew and Release are called from one
// goroutine (the match's renewer).
type Ownership interface {
	// Renew extends the lease; ErrLeaseLost (wrapped) when another instance
	// holds it now or it expired.
	Renew(ctx context.Context) error
	// Release gives the lease up at once (another instance may claim it).
	Release(ctx context.Context) error
}

var (
	// ErrLeaseLost is wrapped by Ownership.Renew when the lease is gone.
	ErrLeaseLost = errors.New("match ownership lease lost")
	// ErrNoOwner is wrapped by MatchHub.Request when nobody serves the match.
	ErrNoOwner = errors.New("no instance serves the match")
)

// NewShared returns a game service whose matches are shared, through hub,
// with the other instances using the same cluster: a player joining match
// "m" on any instance plays in the same match.
//
// Per match one instance is the owner (it holds hub's lease and runs the
// ordinary authoritative loop); the others relay: they forward their
// players' joins (a request to the owner) and inputs (a batch per tick, into
// the player's inbox on the owner: the same limits, validation and flood
// kicks apply) and deliver the owner's Tick to their players from a mirror
// of the match (players, positions, tick), which also serves full updates to
// slow readers and joiners. A relay that misses a tick asks the owner for a
// full frame and skips deltas until it arrives.
//
// When the owner stops ticking for a lease (or hands the match over as it
// closes), a relay claims the lease and continues the match from its mirror:
// ticks continue above the highest seen (skipping the time without ticks),
// the relays' players are kept with their positions and last inputs (each
// relay re-claims its players in its next batch) and players nobody claims
// within a lease (those of the lost instance) are removed. The caller owns
// hub; log may be nil.
func NewShared(cfg Config, hub MatchHub, m *metrics.Set, log *slog.Logger) (*Service, error) {
	if hub == nil {
		return nil, errors.New("game: nil match hub")
	}
	if hub.Lease() <= 0 {
		return nil, fmt.Errorf("game: match hub lease is %v, want > 0", hub.Lease())
	}
	return newService(cfg, hub, m, log)
}

func unavailable(match, format string, args ...any) *gamev1.Error {
	return &gamev1.Error{Code: uint32(codes.Unavailable), Message: fmt.Sprintf(format, args...), Field: "join.match", Match: match}
}

// startLoops starts fns as loops Close waits for; false (nothing started)
// once the service is closed.
func (s *Service) startLoops(fns ...func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.loops.Add(len(fns))
	for _, fn := range fns {
		go fn()
	}
	return true
}

// goBg runs fn in the background (Close waits for it); false once closed.
func (s *Service) goBg(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn()
	}()
	return true
}

func (s *Service) removeNode(n *node) {
	s.mu.Lock()
	if s.nodes[n.name] == n {
		delete(s.nodes, n.name)
	}
	s.mu.Unlock()
}

// joinShared joins match name for ss through this instance's node of the
// match, creating the node (claiming the lease or relaying) when needed. It
// blocks for at most a few lease-bounded requests.
func (s *Service) joinShared(ctx context.Context, ss *session, name string) (*membership, *gamev1.Error) {
	var last *gamev1.Error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			case <-ctx.Done():
				return nil, &gamev1.Error{Code: uint32(codes.Canceled), Message: "stream ended", Field: "join.match", Match: name}
			}
		}
		n, e := s.nodeFor(ctx, name)
		if e != nil {
			return nil, e
		}
		p, e, retry := n.join(ctx, ss)
		if e == nil {
			return &membership{name: name, n: n, p: p}, nil
		}
		if !retry {
			return nil, e
		}
		last = e
	}
	return nil, last
}

// nodeFor returns this instance's node of match name, entered (see
// node.enter), creating it when there is none.
func (s *Service) nodeFor(ctx context.Context, name string) (*node, *gamev1.Error) {
	for range 5 {
		s.mu.Lock()
		if s.closed || s.draining {
			s.mu.Unlock()
			return nil, unavailable(name, "server shutting down")
		}
		n := s.nodes[name]
		s.mu.Unlock()
		if n != nil {
			if n.enter() {
				return n, nil
			}
			s.removeNode(n)
			continue
		}
		n, e := s.createNode(ctx, name)
		if e != nil {
			return nil, e
		}
		if n != nil {
			return n, nil
		}
	}
	return nil, unavailable(name, "match %q keeps closing; try again", name)
}

// createNode claims match name's lease and starts an owning node, or a
// relaying one when another instance owns the match. It returns nil, nil
// when another goroutine created the node meanwhile.
func (s *Service) createNode(ctx context.Context, name string) (*node, *gamev1.Error) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	s.mu.Lock()
	if s.nodes[name] != nil {
		s.mu.Unlock()
		return nil, nil
	}
	if len(s.matches)+len(s.nodes) >= s.cfg.MaxMatches {
		s.mu.Unlock()
		return nil, &gamev1.Error{
			Code:    uint32(codes.ResourceExhausted),
			Message: fmt.Sprintf("cannot create match %q: the server hosts the maximum of %d matches", name, s.cfg.MaxMatches),
			Field:   "join.match",
			Match:   name,
		}
	}
	s.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, s.hub.Lease())
	own, ok, err := s.hub.Claim(cctx, name)
	cancel()
	if err != nil {
		return nil, unavailable(name, "cannot claim match %q in the cluster: %v", name, err)
	}
	n := &node{s: s, name: name, done: make(chan struct{}), joining: 1, wake: make(chan struct{}, 1), players: map[string]*player{}}
	n.mir.states = map[string]*gamev1.PlayerState{}
	n.mir.pers = map[string]*relayv1.Personal{}
	n.mu.Lock()
	if ok {
		err = n.startOwner(own, nil)
	} else {
		err = n.startRelay()
	}
	n.mu.Unlock()
	if err != nil {
		if ok {
			releaseSoon(own, s.hub.Lease())
		}
		return nil, unavailable(name, "cannot host match %q: %v", name, err)
	}
	s.mu.Lock()
	s.nodes[name] = n
	s.mu.Unlock()
	s.log.Debug("game: shared match node created", "match", name, "owner", ok)
	return n, nil
}

func releaseSoon(own Ownership, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	_ = own.Release(ctx)
	cancel()
}

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
