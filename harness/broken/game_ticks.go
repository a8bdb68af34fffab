package broken

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
)

// tickRules are the corpus tick server's rules, the reference's defaults:
// announced in every Joined and enforced on every input.
var tickRules = &gamev1.Rules{TickRateHz: 30, Width: 1000, Height: 1000, MaxStep: 10, MaxInputsPerTick: 4, MaxPlayers: 100}

// playerQueue bounds each stream's queue of events; one that overflows ends
// that stream with RESOURCE_EXHAUSTED.
const playerQueue = 256

type gameStream = grpc.BidiStreamingServer[gamev1.ClientEvent, gamev1.ServerEvent]

// gameServer is the corpus's authoritative tick server: one loop goroutine
// per match applies each player's queued inputs (validated: increasing seq,
// a move no longer than max_step that stays on the map, at most
// max_inputs_per_tick per tick; the rest dropped and counted) and sends
// every player one update per tick — full right after its join, deltas
// after that (every player listed, so a position is never stale). Each
// stream's handler goroutine is its writer; a reader goroutine handles its
// client events.
type gameServer struct {
	gamev1.UnimplementedGameServiceServer
	defect GameDefect
	// stop is closed by Stop; match loops end on it.
	stop chan struct{}
	// wg counts readers and match loops; Stop waits for them.
	wg sync.WaitGroup

	// mu guards matches and everything in them. Pushes happen with mu held,
	// so every queue receives a match's updates in tick order.
	mu      sync.Mutex
	nextID  int
	matches map[string]*tickMatch
}

type tickMatch struct {
	name    string
	tick    uint64
	steps   int // ticks run: the defects fire on every tickDefectEvery-th
	players map[*gamePlayer]bool
}

// gamePlayer is one stream (fields guarded by gameServer.mu, but out,
// kicked and once).
type gamePlayer struct {
	id        string
	match     *tickMatch
	x, y      float64
	inputs    []*gamev1.Input // queued for the next tick
	lastInput uint64
	lastSent  int64
	dropped   uint64
	out       chan *gamev1.ServerEvent
	kicked    chan struct{} // closed once, when out overflowed
	once      sync.Once
}

// StartGameTicks serves the corpus tick server with defect d (GameNone:
// the correct variant) on free loopback ports.
func StartGameTicks(d GameDefect) (*Server, error) {
	s := &gameServer{defect: d, stop: make(chan struct{}), matches: map[string]*tickMatch{}}
	srv, err := serve("game "+d.String(), func(gs *grpc.Server) { gamev1.RegisterGameServiceServer(gs, s) },
		func() { close(s.stop) })
	if err != nil {
		return nil, err
	}
	srv.OnStop(s.wg.Wait)
	return srv, nil
}

// Play serves one stream: this goroutine writes, a reader goroutine
// handles client events. On the client's io.EOF the reader leaves the
// match and closes the queue; the writer sends what is queued and the
// stream ends with nil.
func (s *gameServer) Play(st gameStream) error {
	if _, err := userOf(st.Context()); err != nil {
		return err
	}
	s.mu.Lock()
	s.nextID++
	p := &gamePlayer{id: fmt.Sprintf("p%d", s.nextID), out: make(chan *gamev1.ServerEvent, playerQueue), kicked: make(chan struct{})}
	s.mu.Unlock()
	s.wg.Go(func() { s.read(st, p) })
	return p.write(st.Context(), st)
}

// read handles the stream's client events in order until Recv fails.
func (s *gameServer) read(st gameStream, p *gamePlayer) {
	for {
		ev, err := st.Recv()
		if err != nil {
			s.mu.Lock()
			s.leave(p)
			s.mu.Unlock()
			if err == io.EOF {
				close(p.out) // nobody pushes to p any more: it is in no match
			}
			return
		}
		s.handle(p, ev)
	}
}

// handle answers one client event; problems are Error events.
func (s *gameServer) handle(p *gamePlayer, ev *gamev1.ClientEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e := ev.Event.(type) {
	case *gamev1.ClientEvent_Join:
		s.join(p, e.Join.Match)
	case *gamev1.ClientEvent_Input:
		switch {
		case p.match == nil || p.match.name != e.Input.Match:
			p.push(gameError(codes.FailedPrecondition, "join the match first", "input.match", e.Input.Match, e.Input.Seq))
		case len(p.inputs) >= 4*int(tickRules.MaxInputsPerTick):
			p.dropped++ // far over the per-tick limit already
		default:
			p.inputs = append(p.inputs, e.Input)
		}
	case *gamev1.ClientEvent_Leave:
		s.leave(p)
		p.push(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Left{Left: &gamev1.Left{Match: e.Leave.Match}}})
	default:
		p.push(gameError(codes.InvalidArgument, "empty client event", "event", "", 0))
	}
}

// join puts p in the named match, creating it and its loop, and sends
// Joined and a full update (mu held).
func (s *gameServer) join(p *gamePlayer, name string) {
	if !validRoom(name) {
		p.push(gameError(codes.InvalidArgument, "match must be 1-64 characters of [A-Za-z0-9._-]", "join.match", name, 0))
		return
	}
	s.leave(p)
	m := s.matches[name]
	if m == nil {
		m = &tickMatch{name: name, players: map[*gamePlayer]bool{}}
		s.matches[name] = m
		s.wg.Go(func() { s.loop(m) })
	}
	p.match, p.x, p.y = m, tickRules.Width/2, tickRules.Height/2
	m.players[p] = true
	p.push(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Joined{Joined: &gamev1.Joined{
		Match: name, PlayerId: p.id, Rules: tickRules, Tick: m.tick}}})
	p.push(m.update(p, true, time.Now().UnixNano()))
}

// leave takes p out of its match (mu held).
func (s *gameServer) leave(p *gamePlayer) {
	if p.match != nil {
		delete(p.match.players, p)
		p.match, p.inputs = nil, nil
	}
}

// loop runs m's ticks until the server stops or the match is empty.
func (s *gameServer) loop(m *tickMatch) {
	t := time.NewTicker(time.Second / time.Duration(tickRules.TickRateHz))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if len(m.players) == 0 {
			delete(s.matches, m.name)
			s.mu.Unlock()
			return
		}
		s.step(m)
		s.mu.Unlock()
	}
}

// step runs one tick: every player's queued inputs, then one update each
// (mu held).
func (s *gameServer) step(m *tickMatch) {
	m.steps++
	nth := m.steps%tickDefectEvery == 0
	if !nth || s.defect != GameTickRepeated {
		m.tick++
	} // else defect: GameTickRepeated (this tick runs under the last one's number)
	for p := range m.players {
		p.apply()
	}
	if nth && s.defect == GameTickSkipped {
		return // defect: GameTickSkipped (nobody gets this tick's update)
	}
	now := time.Now().UnixNano()
	for p := range m.players {
		u := m.update(p, false, now)
		p.push(u)
		if nth && s.defect == GameStateSentTwice {
			p.push(u) // defect: GameStateSentTwice (the same update again)
		}
	}
}

// apply processes p's queued inputs for one tick (mu held).
func (p *gamePlayer) apply() {
	for i, in := range p.inputs {
		if i >= int(tickRules.MaxInputsPerTick) {
			p.dropped += uint64(len(p.inputs) - i)
			break
		}
		x, y := p.x, p.y
		if in.Action == gamev1.Action_ACTION_MOVE {
			x, y = x+in.Dx, y+in.Dy
		}
		switch {
		case in.Seq <= p.lastInput,
			in.Action != gamev1.Action_ACTION_MOVE && in.Action != gamev1.Action_ACTION_STOP,
			math.Hypot(in.Dx, in.Dy) > tickRules.MaxStep,
			x < 0 || y < 0 || x > tickRules.Width || y > tickRules.Height:
			p.dropped++
			continue
		}
		p.x, p.y, p.lastInput, p.lastSent = x, y, in.Seq, in.ClientSentUnixNanos
	}
	p.inputs = p.inputs[:0]
}

// update is m's state at its tick as p sees it (mu held).
func (m *tickMatch) update(p *gamePlayer, full bool, now int64) *gamev1.ServerEvent {
	u := &gamev1.TickUpdate{Match: m.name, Tick: m.tick, Full: full, YourLastInput: p.lastInput,
		YourLastInputSentUnixNanos: p.lastSent, DroppedInputs: p.dropped, ServerUnixNanos: now}
	for q := range m.players {
		u.Players = append(u.Players, &gamev1.PlayerState{PlayerId: q.id, X: q.x, Y: q.y, LastInput: q.lastInput})
	}
	return &gamev1.ServerEvent{Event: &gamev1.ServerEvent_Tick{Tick: u}}
}

// push queues ev without waiting: a player whose queue is full is a slow
// consumer, ended with RESOURCE_EXHAUSTED, and gets nothing more.
func (p *gamePlayer) push(ev *gamev1.ServerEvent) {
	select {
	case <-p.kicked:
		return
	default:
	}
	select {
	case p.out <- ev:
	default:
		p.once.Do(func() { close(p.kicked) })
	}
}

// write sends queued events until the queue is closed and empty (nil), the
// player is kicked, a Send fails or ctx ends.
func (p *gamePlayer) write(ctx context.Context, st gameStream) error {
	kickErr := status.Errorf(codes.ResourceExhausted, "slow consumer: more than %d events queued for this stream", playerQueue)
	for {
		select {
		case <-p.kicked:
			return kickErr
		default:
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-p.kicked:
			return kickErr
		case ev, ok := <-p.out:
			if !ok {
				return nil
			}
			if err := st.Send(ev); err != nil {
				return err
			}
		}
	}
}

func gameError(code codes.Code, msg, field, match string, seq uint64) *gamev1.ServerEvent {
	return &gamev1.ServerEvent{Event: &gamev1.ServerEvent_Error{Error: &gamev1.Error{
		Code: uint32(code), Message: msg, Field: field, Match: match, Seq: seq}}}
}
