// Package ghostplayers is workshop exercise 5: a game server that keeps
// playing for players who have gone.
//
// Each match has a loop goroutine that advances the tick 30 times a second
// and wakes every player; each player's handler then sends it the new
// state. Read it as the student will: when a client cancels its stream or
// its connection drops, who notices?
package ghostplayers

import (
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
)

var rules = &gamev1.Rules{TickRateHz: 30, Width: 1000, Height: 1000, MaxStep: 10, MaxInputsPerTick: 4, MaxPlayers: 100}

// server holds the matches. mu guards matches and everything inside them;
// stop is closed when the whole server stops.
type server struct {
	gamev1.UnimplementedGameServiceServer
	stop chan struct{}

	mu      sync.Mutex
	nextID  int
	matches map[string]*match
}

type match struct {
	name    string
	tick    uint64
	players map[string]*player
}

// player is one stream in a match; wake is poked by the match loop.
type player struct {
	id        string
	x, y      float64
	lastInput uint64
	lastSent  int64
	sent      bool   // an update went out since joining
	sentTick  uint64 // the tick of that update
	wake      chan struct{}
}

// Register adds the game service to s. stop ends every loop and handler.
func Register(s *grpc.Server) (stop func()) {
	srv := &server{stop: make(chan struct{}), matches: map[string]*match{}}
	gamev1.RegisterGameServiceServer(s, srv)
	return sync.OnceFunc(func() { close(srv.stop) })
}

// Play serves one player. A goroutine reads client events into inputs;
// this goroutine applies them and sends the state whenever the match ticks.
func (s *server) Play(stream grpc.BidiStreamingServer[gamev1.ClientEvent, gamev1.ServerEvent]) error {
	s.mu.Lock()
	s.nextID++
	p := &player{id: fmt.Sprintf("p%d", s.nextID), wake: make(chan struct{}, 1)}
	s.mu.Unlock()

	inputs := make(chan *gamev1.ClientEvent)
	goodbye := make(chan struct{})
	go func() {
		for {
			ev, err := stream.Recv()
			if err == io.EOF {
				close(goodbye)
				return
			}
			if err != nil {
				return // a network hiccup: the player will be back
			}
			select {
			case inputs <- ev:
			case <-s.stop:
				return
			}
		}
	}()

	var m *match
	for {
		select {
		case <-goodbye:
			s.leave(m, p)
			return nil
		case <-s.stop:
			return status.Error(codes.Unavailable, "server stopping")
		case ev := <-inputs:
			switch e := ev.Event.(type) {
			case *gamev1.ClientEvent_Join:
				if m == nil {
					var tick uint64
					m, tick = s.join(e.Join.Match, p)
					_ = stream.Send(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Joined{Joined: &gamev1.Joined{
						Match: m.name, PlayerId: p.id, Rules: rules, Tick: tick}}})
				}
			case *gamev1.ClientEvent_Input:
				s.input(m, p, e.Input)
			case *gamev1.ClientEvent_Leave:
				s.leave(m, p)
				m = nil
				_ = stream.Send(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Left{Left: &gamev1.Left{Match: e.Leave.Match}}})
			}
		case <-p.wake:
			if u := s.update(m, p); u != nil {
				_ = stream.Send(u)
			}
		}
	}
}

// join puts p in the named match, creating it (and its loop) if needed,
// and returns the match and its current tick.
func (s *server) join(name string, p *player) (*match, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.matches[name]
	if m == nil {
		m = &match{name: name, players: map[string]*player{}}
		s.matches[name] = m
		go s.loop(m)
	}
	p.x, p.y = rules.Width/2, rules.Height/2
	p.sent = false
	m.players[p.id] = p
	p.poke()
	return m, m.tick
}

func (p *player) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// input applies one movement, kept inside the map and within one step.
func (s *server) input(m *match, p *player, in *gamev1.Input) {
	if m == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.Seq <= p.lastInput {
		return
	}
	if in.Action == gamev1.Action_ACTION_MOVE && in.Dx*in.Dx+in.Dy*in.Dy <= rules.MaxStep*rules.MaxStep {
		p.x = min(max(p.x+in.Dx, 0), rules.Width)
		p.y = min(max(p.y+in.Dy, 0), rules.Height)
	}
	p.lastInput = in.Seq
	p.lastSent = in.ClientSentUnixNanos
}

func (s *server) leave(m *match, p *player) {
	if m == nil {
		return
	}
	s.mu.Lock()
	delete(m.players, p.id)
	s.mu.Unlock()
}

// loop advances m's tick and wakes every player until the server stops or
// the match is empty.
func (s *server) loop(m *match) {
	t := time.NewTicker(time.Second / time.Duration(rules.TickRateHz))
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
		m.tick++
		for _, p := range m.players {
			p.poke()
		}
		s.mu.Unlock()
	}
}

// update is the full state of m for p, or nil when p has seen this tick.
func (s *server) update(m *match, p *player) *gamev1.ServerEvent {
	if m == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.sent && m.tick <= p.sentTick {
		return nil
	}
	p.sent, p.sentTick = true, m.tick
	u := &gamev1.TickUpdate{Match: m.name, Tick: m.tick, Full: true, YourLastInput: p.lastInput,
		YourLastInputSentUnixNanos: p.lastSent, ServerUnixNanos: time.Now().UnixNano()}
	for _, q := range m.players {
		u.Players = append(u.Players, &gamev1.PlayerState{PlayerId: q.id, X: q.x, Y: q.y, LastInput: q.lastInput})
	}
	return &gamev1.ServerEvent{Event: &gamev1.ServerEvent_Tick{Tick: u}}
}
