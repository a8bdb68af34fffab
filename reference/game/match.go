package game

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	relayv1 "github.com/bidikit/bidikit/proto/bidikit/relay/v1"
	"github.com/bidikit/bidikit/reference/streamhost"
)

// inputRec is the part of an Input the loop needs.
type inputRec struct {
	seq    uint64
	action gamev1.Action
	dx, dy float64
	sent   int64
}

// inbox is a player's bounded input queue: the stream's reader puts inputs in,
// the match loop takes them out once per tick. It holds at most
// MaxInputsPerTick inputs; put drops (and counts) what does not fit, so the
// reader never blocks and the loop never does more than the per-tick limit.
type inbox struct {
	mu   sync.Mutex
	buf  []inputRec // len <= cap(buf) == MaxInputsPerTick
	over uint64     // inputs dropped since the loop last took the inbox
}

func (b *inbox) put(in inputRec) {
	b.mu.Lock()
	if len(b.buf) < cap(b.buf) {
		b.buf = append(b.buf, in)
	} else {
		b.over++
	}
	b.mu.Unlock()
}

// addOver counts n inputs dropped before they reached the inbox (by a relay
// instance, over the same limit).
func (b *inbox) addOver(n uint64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.over += n
	b.mu.Unlock()
}

// take appends the queued inputs to dst, empties the inbox and returns the
// over-limit count.
func (b *inbox) take(dst []inputRec) ([]inputRec, uint64) {
	b.mu.Lock()
	dst = append(dst, b.buf...)
	b.buf = b.buf[:0]
	over := b.over
	b.over = 0
	b.mu.Unlock()
	return dst, over
}

// player is one stream's membership in a match. The inbox is shared with the
// stream's reader; every other field is owned by the match loop (or, for a
// player of a relaying node, by the node under its mutex).
//
// A player of a shared match whose stream is on another instance (a remote
// player, seen by the owner) has rs set and no out: its events and personal
// fields travel in the owner's Tick messages.
type player struct {
	in  inbox
	out *outbox     // nil for a remote player
	rs  *remoteSeat // non-nil for a remote player

	state    *gamev1.PlayerState   // id, position, last processed seq
	lastSent int64                 // client_sent_unix_nanos of the last processed input
	dropped  uint64                // inputs dropped in this match so far
	flood    streamhost.FloodMeter // recent drops, as Service.flood counts them
	changed  bool                  // state changed since the last delta (or joined)
	member   bool                  // still in m.players
	batch    []inputRec

	joinedTick uint64 // relaying node: ticks up to this one are not forwarded
}

// remoteSeat is the owner's record of a remote player, owned by the loop.
type remoteSeat struct {
	relay    string    // the relay instance serving the player ("" until it claims it after a takeover)
	claimed  bool      // the relay confirmed the player since this instance owns the match
	lastSeen time.Time // last batch naming the player
	events   []*gamev1.ServerEvent
	endCode  codes.Code
	endMsg   string
}

// reqKind says what a request to a match loop asks for.
type reqKind int

const (
	reqJoin reqKind = iota
	reqLeave
	reqRemoteJoin // shared: a player on a relay instance joins
	reqInputs     // shared: a relay's batch of inputs
	reqSync       // shared: publish the next Tick with a full frame
)

// request is a membership change handed to a match loop. The loop answers on
// reply (buffered, never blocks).
type request struct {
	kind   reqKind
	user   string
	out    *outbox
	p      *player // reqLeave
	notify bool    // reqLeave: send Left
	relay  string  // reqRemoteJoin: the relay instance
	batch  *relayv1.Inputs
	reply  chan reply // nil: no answer wanted
}

type reply struct {
	p      *player
	err    *gamev1.Error // refused join
	joined *gamev1.Joined
	full   []byte // reqRemoteJoin: the full frame after the join
}

// match is one match: its loop goroutine owns every field below reqs/done
// (the players, their states, the tick counter); streams talk to it through
// reqs (joins and leaves) and the players' inboxes (inputs).
type match struct {
	s    *Service
	name string
	reqs chan request  // unbuffered: a send succeeds only while the loop runs
	done chan struct{} // closed when the loop has ended

	// Owned by the loop goroutine.
	tick       uint64
	nextID     uint64
	players    []*player // join order
	removed    []string  // ids removed since the last delta
	emptySince time.Time
	queued     int               // this match's share of the queue-depth gauge, last tick
	tu         gamev1.TickUpdate // reused for encoding
	changedBuf []*gamev1.PlayerState
	steps      uint64 // ticks stepped: the flood meters' clock
	hist       *tickHist

	// Shared matches only (link == nil for New): the loop owns these too.
	link     *ownerLink
	byID     map[string]*player
	fullNext bool      // the next tick's frame is full (a relay asked, or a takeover)
	departed []*player // remote players removed this tick with events to deliver
}

func newMatch(s *Service, name string) *match {
	return &match{
		s:          s,
		name:       name,
		reqs:       make(chan request),
		done:       make(chan struct{}),
		emptySince: time.Now(),
		hist:       &s.hists[s.nextShard.Add(1)%histShards],
		byID:       map[string]*player{},
	}
}

// run is the match loop: the only writer of the match state. It ticks at
// cfg.TickRate, answers membership requests between ticks, and returns when
// the match has had no players for cfg.IdleExpiry (after removing itself from
// the service) or when the service closes.
func (m *match) run() {
	defer m.s.loops.Done()
	defer close(m.done)
	defer func() { m.s.queueDepth.Sub(float64(m.queued)) }()
	if m.link != nil {
		defer m.link.ended(m)
	}
	t := time.NewTicker(time.Second / time.Duration(m.s.cfg.TickRate))
	defer t.Stop()
	var lost <-chan struct{}
	if m.link != nil {
		lost = m.link.lost
	}
	for {
		select {
		case <-m.s.stop:
			m.shutdown()
			return
		case <-lost:
			m.lostOwnership()
			return
		case r := <-m.reqs:
			m.handle(r)
		case <-t.C:
			m.step()
			if len(m.players) == 0 && time.Since(m.emptySince) >= m.s.cfg.IdleExpiry {
				m.s.expire(m)
				m.s.log.Debug("game: match expired", "match", m.name, "tick", m.tick)
				return
			}
		}
	}
}

func (m *match) rules() *gamev1.Rules {
	c := &m.s.cfg
	return &gamev1.Rules{
		TickRateHz:       uint32(c.TickRate),
		Width:            c.Width,
		Height:           c.Height,
		MaxStep:          c.MaxStep,
		MaxInputsPerTick: uint32(c.MaxInputsPerTick),
		MaxPlayers:       uint32(c.MaxPlayers),
	}
}

func (m *match) handle(r request) {
	switch r.kind {
	case reqJoin, reqRemoteJoin:
		if len(m.players) >= m.s.cfg.MaxPlayers {
			r.reply <- reply{err: &gamev1.Error{
				Code:    uint32(codes.ResourceExhausted),
				Message: fmt.Sprintf("match %q is full: it has the maximum of %d players", m.name, m.s.cfg.MaxPlayers),
				Field:   "join.match",
				Match:   m.name,
			}}
			return
		}
		m.nextID++
		p := &player{
			out: r.out,
			state: &gamev1.PlayerState{
				PlayerId: fmt.Sprintf("%s#%d", r.user, m.nextID),
				X:        m.s.cfg.Width / 2,
				Y:        m.s.cfg.Height / 2,
			},
			changed: true,
			member:  true,
		}
		p.in.buf = make([]inputRec, 0, m.s.cfg.MaxInputsPerTick)
		if r.kind == reqRemoteJoin {
			p.out = nil
			p.rs = &remoteSeat{relay: r.relay, claimed: true, lastSeen: time.Now()}
		}
		m.players = append(m.players, p)
		m.byID[p.state.PlayerId] = p
		joined := &gamev1.Joined{Match: m.name, PlayerId: p.state.PlayerId, Rules: m.rules(), Tick: m.tick}
		full := m.encode(true, time.Now().UnixNano())
		if p.rs != nil {
			r.reply <- reply{p: p, joined: joined, full: full.b}
			return
		}
		m.s.memberJoined()
		r.out.pushEvent(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Joined{Joined: joined}}, nil)
		r.out.pushFull(full, p.personal())
		r.reply <- reply{p: p}
	case reqLeave:
		if m.remove(r.p) && r.notify {
			r.out.pushEvent(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Left{Left: &gamev1.Left{Match: m.name}}}, nil)
		}
		r.reply <- reply{}
	case reqInputs:
		m.takeBatch(r.batch)
	case reqSync:
		m.fullNext = true
	}
}

// remove takes p out of the match (it appears in the next delta's removed
// list) and reports whether it was a member.
func (m *match) remove(p *player) bool {
	if p == nil || !p.member {
		return false
	}
	p.member = false
	for i, q := range m.players {
		if q == p {
			m.players = slices.Delete(m.players, i, i+1)
			break
		}
	}
	if m.byID[p.state.PlayerId] == p {
		delete(m.byID, p.state.PlayerId)
	}
	m.removed = append(m.removed, p.state.PlayerId)
	if len(m.players) == 0 {
		m.emptySince = time.Now()
	}
	if p.rs == nil {
		m.s.memberLeft() // remote players are counted by their relay instance
	}
	return true
}

func (p *player) personal() personal {
	return personal{lastInput: p.state.LastInput, lastInputSent: p.lastSent, dropped: p.dropped}
}

// step runs one tick: apply every player's inputs, kick abusers, build the
// delta once and hand every player its update.
func (m *match) step() {
	start := time.Now()
	now := start.UnixNano()
	m.tick++
	m.steps++
	if m.link != nil {
		m.expireRemote(start)
	}
	var kicked []*player
	for _, p := range m.players {
		if m.applyInputs(p) {
			kicked = append(kicked, p)
		}
	}
	for _, p := range kicked {
		m.kick(p)
	}
	if len(m.players) > 0 || len(m.departed) > 0 {
		delta := m.encode(false, now)
		var full *frame
		fullFn := func() *frame {
			if full == nil {
				full = m.encode(true, now)
			}
			return full
		}
		if m.fullNext {
			delta = fullFn()
			m.fullNext = false
		}
		remote := len(m.departed) > 0
		for _, p := range m.players {
			if p.out != nil {
				p.out.pushTick(delta, fullFn, p.personal())
			} else {
				remote = true
			}
		}
		if m.link != nil && remote { // relays follow a match only while they have players in it
			m.publish(delta, false)
		}
	}
	queued := 0
	for _, p := range m.players {
		p.changed = false
		if p.out != nil {
			n, _ := p.out.q.Len()
			queued += n
		}
	}
	m.s.queueDepth.Add(float64(queued - m.queued))
	m.queued = queued
	clear(m.removed)
	m.removed = m.removed[:0]
	m.hist.record(time.Since(start))
}

// stepTime is the flood meters' clock: the steps taken at the tick rate, so
// that a late tick leaks no more than one tick's share.
func (m *match) stepTime() time.Time {
	return time.Unix(0, 0).Add(time.Duration(m.steps) * time.Second / time.Duration(m.s.cfg.TickRate))
}

// applyInputs processes p's queued inputs in seq order and reports whether p
// has now dropped too many inputs and must be kicked.
func (m *match) applyInputs(p *player) bool {
	var over uint64
	p.batch, over = p.in.take(p.batch[:0])
	b := p.batch
	for i := 1; i < len(b); i++ { // insertion sort by seq: at most MaxInputsPerTick items
		for j := i; j > 0 && b[j].seq < b[j-1].seq; j-- {
			b[j], b[j-1] = b[j-1], b[j]
		}
	}
	var report *gamev1.Error
	var invalid uint64
	for i := range b {
		in := &b[i]
		if e := m.check(p, in); e != nil {
			invalid++
			m.s.rejected(e.Field)
			if report == nil {
				report = e
			}
			continue
		}
		if in.action == gamev1.Action_ACTION_MOVE {
			p.state.X = clamp(p.state.X+in.dx, m.s.cfg.Width)
			p.state.Y = clamp(p.state.Y+in.dy, m.s.cfg.Height)
		}
		p.state.LastInput = in.seq
		p.lastSent = in.sent
		p.changed = true
	}
	clear(b)
	if over > 0 {
		m.s.rateLimited(over)
		if report == nil {
			report = &gamev1.Error{
				Code:    uint32(codes.ResourceExhausted),
				Message: fmt.Sprintf("%d inputs dropped: more than the limit of %d inputs per tick", over, m.s.cfg.MaxInputsPerTick),
				Field:   "input",
				Match:   m.name,
			}
		}
	}
	drops := over + invalid
	p.dropped += drops
	m.s.droppedInputs(drops)
	if report != nil {
		// At most one error event per player per tick, and none while an
		// earlier event is still unsent: a cheater cannot make the server
		// flood itself. dropped_inputs counts every drop.
		m.eventIfIdle(p, &gamev1.ServerEvent{Event: &gamev1.ServerEvent_Error{Error: report}})
	}
	if drops == 0 {
		return false // the bucket leaks lazily: by the steps since its last drop
	}
	return m.s.flood.Refused(&p.flood, m.stepTime(), int(drops))
}

// check validates one input against the rules; nil means it is accepted.
func (m *match) check(p *player, in *inputRec) *gamev1.Error {
	bad := func(field, format string, args ...any) *gamev1.Error {
		return &gamev1.Error{
			Code:    uint32(codes.InvalidArgument),
			Message: fmt.Sprintf(format, args...),
			Field:   field,
			Match:   m.name,
			Seq:     in.seq,
		}
	}
	if in.action != gamev1.Action_ACTION_MOVE && in.action != gamev1.Action_ACTION_STOP {
		return bad("input.action", "input %d: action %d is not ACTION_MOVE or ACTION_STOP", in.seq, in.action)
	}
	if in.seq <= p.state.LastInput {
		return bad("input.seq", "input %d: seq must be greater than the last processed seq %d", in.seq, p.state.LastInput)
	}
	if in.action == gamev1.Action_ACTION_STOP {
		return nil
	}
	if math.IsNaN(in.dx) || math.IsInf(in.dx, 0) {
		return bad("input.dx", "input %d: dx is %v, want a finite number", in.seq, in.dx)
	}
	if math.IsNaN(in.dy) || math.IsInf(in.dy, 0) {
		return bad("input.dy", "input %d: dy is %v, want a finite number", in.seq, in.dy)
	}
	if l := math.Hypot(in.dx, in.dy); l > m.s.cfg.MaxStep {
		return bad("input.dx", "input %d: move length %g exceeds max_step %g", in.seq, l, m.s.cfg.MaxStep)
	}
	return nil
}

func clamp(v, hi float64) float64 {
	switch {
	case v < 0:
		return 0
	case v > hi:
		return hi
	}
	return v
}

// kick removes p for input flooding and ends its stream.
func (m *match) kick(p *player) {
	msg := fmt.Sprintf("kicked from match %q for input flooding: more than %d inputs dropped (over the limit of %d per tick, or invalid) within %v",
		m.name, m.s.cfg.FloodKickAfter, m.s.cfg.MaxInputsPerTick, m.s.cfg.FloodWindow)
	m.remove(p)
	m.s.kicked()
	m.s.log.Info("game: player kicked", "match", m.name, "player", p.state.PlayerId, "reason", "input flood", "dropped", p.dropped)
	m.event(p, &gamev1.ServerEvent{Event: &gamev1.ServerEvent_Kick{Kick: &gamev1.Kick{
		Match: m.name, Reason: gamev1.Kick_REASON_INPUT_FLOOD, Message: msg,
	}}}, status.Error(codes.ResourceExhausted, msg))
	if p.rs != nil {
		m.departed = append(m.departed, p)
	}
}

// event queues ev for p (ending its stream with end when end != nil): into
// its outbox, or for a remote player into the next Tick message.
func (m *match) event(p *player, ev *gamev1.ServerEvent, end error) {
	if p.rs == nil {
		p.out.pushEvent(ev, end)
		return
	}
	p.rs.events = append(p.rs.events, ev)
	if end != nil {
		st := status.Convert(end)
		p.rs.endCode, p.rs.endMsg = st.Code(), st.Message()
	}
}

// eventIfIdle queues a best-effort event: not while an earlier one is unsent
// (for a remote player: at most one per Tick message; its relay applies the
// same rule to its own queue).
func (m *match) eventIfIdle(p *player, ev *gamev1.ServerEvent) {
	if p.rs == nil {
		p.out.pushEventIfIdle(ev)
		return
	}
	if len(p.rs.events) == 0 {
		p.rs.events = append(p.rs.events, ev)
	}
}

// shutdown ends every local player's stream because the service is closing.
// Remote players of a shared match stay: the last Tick hands the match over
// (its delta removes the local players) and the lease is then released.
func (m *match) shutdown() {
	remote := false
	for _, p := range slices.Clone(m.players) {
		if p.rs != nil {
			remote = true
			continue
		}
		p.out.pushEvent(shutdownKick(m.name), errShuttingDown)
		m.remove(p)
	}
	if remote && m.link != nil {
		m.tick++
		m.publish(m.encode(false, time.Now().UnixNano()), true)
	}
	for _, p := range m.players {
		p.member = false
	}
	m.players = nil
}

// encode builds the frame of the current tick: every player when full, else
// the players changed in this tick and those removed since the last delta.
func (m *match) encode(full bool, now int64) *frame {
	states := m.changedBuf[:0]
	for _, p := range m.players {
		if full || p.changed {
			states = append(states, p.state)
		}
	}
	m.tu.Match = m.name
	m.tu.Tick = m.tick
	m.tu.Full = full
	m.tu.Players = states
	m.tu.Removed = nil
	if !full {
		m.tu.Removed = m.removed
	}
	m.tu.ServerUnixNanos = now
	b, err := proto.Marshal(&m.tu)
	m.tu.Players = nil
	m.tu.Removed = nil
	clear(states)
	m.changedBuf = states[:0]
	if err != nil { // cannot happen for these field types; never send garbage
		m.s.log.Error("game: encoding tick update", "match", m.name, "err", err)
		b = nil
	}
	return &frame{b: b, tick: m.tick, full: full}
}
