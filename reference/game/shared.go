package game

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"

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
		if s.closed || s.host.Draining() {
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
