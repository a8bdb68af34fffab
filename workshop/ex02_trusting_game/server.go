// Package trustinggame is workshop exercise 2: a multiplayer game server
// that believes every input it is sent.
//
// Each match has one loop goroutine that sends the state 30 times a second.
// Inputs are applied the moment they arrive. Read it as the student will:
// what stops a player from sending a thousand inputs a second, or a move of
// a thousand units?
package trustinggame

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
)

// rules are announced to every player when it joins.
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

// player is one stream in a match. out is drained by the stream's writer.
type player struct {
	id        string
	x, y      float64
	lastInput uint64
	lastSent  int64
	out       chan *gamev1.ServerEvent
}

// Register adds the game service to s. stop ends every match loop.
func Register(s *grpc.Server) (stop func()) {
	srv := &server{stop: make(chan struct{}), matches: map[string]*match{}}
	gamev1.RegisterGameServiceServer(s, srv)
	return sync.OnceFunc(func() { close(srv.stop) })
}

// Play serves one player: a reader (this goroutine) and a writer, joined by
// an errgroup.
func (s *server) Play(stream grpc.BidiStreamingServer[gamev1.ClientEvent, gamev1.ServerEvent]) error {
	s.mu.Lock()
	s.nextID++
	p := &player{id: fmt.Sprintf("p%d", s.nextID), out: make(chan *gamev1.ServerEvent, 64)}
	s.mu.Unlock()
	var m *match
	defer func() { s.leave(m, p) }()

	g, ctx := errgroup.WithContext(stream.Context())
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case ev := <-p.out:
				if err := stream.Send(ev); err != nil {
					return err
				}
			}
		}
	})
	g.Go(func() error {
		for {
			in, err := stream.Recv()
			if err == io.EOF {
				return errDone
			}
			if err != nil {
				return err
			}
			switch e := in.Event.(type) {
			case *gamev1.ClientEvent_Join:
				if m == nil {
					m = s.join(e.Join.Match, p)
				}
			case *gamev1.ClientEvent_Input:
				s.input(m, p, e.Input)
			case *gamev1.ClientEvent_Leave:
				s.leave(m, p)
				m = nil
				p.send(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Left{Left: &gamev1.Left{Match: e.Leave.Match}}})
			}
		}
	})
	if err := g.Wait(); err != errDone {
		return err
	}
	return nil
}

// errDone ends the errgroup when the client said goodbye (io.EOF).
var errDone = errors.New("client said goodbye")

// send queues ev for the player, dropping it when the player is far behind.
func (p *player) send(ev *gamev1.ServerEvent) {
	select {
	case p.out <- ev:
	default:
	}
}

// join puts p in the named match, creating it (and its loop) if needed.
func (s *server) join(name string, p *player) *match {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.matches[name]
	if m == nil {
		m = &match{name: name, players: map[string]*player{}}
		s.matches[name] = m
		go s.loop(m)
	}
	p.x, p.y = rules.Width/2, rules.Height/2
	m.players[p.id] = p
	p.send(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Joined{Joined: &gamev1.Joined{
		Match: name, PlayerId: p.id, Rules: rules, Tick: m.tick}}})
	p.send(m.update(p))
	return m
}

// input applies one player input to the match state, straight away.
func (s *server) input(m *match, p *player, in *gamev1.Input) {
	if m == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.Action == gamev1.Action_ACTION_MOVE {
		p.x += in.Dx
		p.y += in.Dy
	}
	p.lastInput = in.Seq
	p.lastSent = in.ClientSentUnixNanos
}

// leave removes p from m.
func (s *server) leave(m *match, p *player) {
	if m == nil {
		return
	}
	s.mu.Lock()
	delete(m.players, p.id)
	s.mu.Unlock()
}

// loop advances m's tick and sends every player the new state until the
// server stops or the match is empty.
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
			p.send(m.update(p))
		}
		s.mu.Unlock()
	}
}

// update is the full state of m as p sees it (mu held).
func (m *match) update(p *player) *gamev1.ServerEvent {
	u := &gamev1.TickUpdate{Match: m.name, Tick: m.tick, Full: true, YourLastInput: p.lastInput,
		YourLastInputSentUnixNanos: p.lastSent, ServerUnixNanos: time.Now().UnixNano()}
	for _, q := range m.players {
		u.Players = append(u.Players, &gamev1.PlayerState{PlayerId: q.id, X: q.x, Y: q.y, LastInput: q.lastInput})
	}
	return &gamev1.ServerEvent{Event: &gamev1.ServerEvent_Tick{Tick: u}}
}
