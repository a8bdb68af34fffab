package gamehub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/cluster"
	"github.com/bidikit/bidikit/reference/game"
	"github.com/bidikit/bidikit/reference/gamehub"
	"github.com/bidikit/bidikit/reference/metrics"
)

// startNATS starts one in-process nats-server with JetStream on a free
// loopback port, stopped at cleanup.
func startNATS() string {
	GinkgoHelper()
	e, err := cluster.StartEmbedded(GinkgoT().TempDir(), "127.0.0.1:0", nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(e.Shutdown)
	return e.ClientURL()
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testConfig is a small map with the default limits and no flood kicks.
func testConfig() game.Config {
	cfg := game.DefaultConfig()
	cfg.Width, cfg.Height = 100, 100
	cfg.FloodKickAfter = 1_000_000
	cfg.FloodWindow = time.Minute
	return cfg
}

// instance is one shared game service with its own NATS connection behind
// its own gRPC server on 127.0.0.1:0.
type instance struct {
	name string
	nc   *nats.Conn
	svc  *game.Service
	gs   *grpc.Server
	addr string

	served chan struct{}
	once   sync.Once
}

func startInstance(url, name string, cfg game.Config, lease time.Duration) *instance {
	GinkgoHelper()
	nc, err := cluster.Connect(url, name, nil)
	Expect(err).NotTo(HaveOccurred())
	hcfg := gamehub.DefaultConfig()
	hcfg.Lease = lease
	hub, err := gamehub.New(nc, hcfg, testLogger().With("instance", name))
	Expect(err).NotTo(HaveOccurred())
	svc, err := game.NewShared(cfg, hub, metrics.Discard(), testLogger().With("instance", name))
	Expect(err).NotTo(HaveOccurred())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	gs := grpc.NewServer(grpc.ChainStreamInterceptor(auth.StreamInterceptor(auth.DevMode{})))
	svc.Register(gs)
	in := &instance{name: name, nc: nc, svc: svc, gs: gs, addr: lis.Addr().String(), served: make(chan struct{})}
	go func() {
		defer close(in.served)
		_ = gs.Serve(lis)
	}()
	DeferCleanup(in.stop)
	return in
}

// stop shuts the instance down the orderly way: connections closed, the
// service closed (an owner hands its matches over), then NATS.
func (in *instance) stop() {
	in.once.Do(func() {
		in.gs.Stop()
		<-in.served
		Expect(in.svc.Close()).To(Succeed())
		in.nc.Close()
	})
}

// crash cuts the instance off like a dead process: its NATS connection goes
// first (no hand-over, no lease release reaches anyone), then its clients.
func (in *instance) crash() {
	in.once.Do(func() {
		in.nc.Close()
		in.gs.Stop()
		<-in.served
		Expect(in.svc.Close()).To(Succeed())
	})
}

func (in *instance) dial() *grpc.ClientConn {
	GinkgoHelper()
	conn, err := grpc.NewClient(in.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return conn
}

// player is one Play stream whose events a goroutine reads into a view of
// the match: the state after every tick (canonical text), ticks, personal
// fields, errors and kicks, and the first broken invariant.
type player struct {
	user   string
	stream gamev1.GameService_PlayClient
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	joined    *gamev1.Joined
	joinErr   *gamev1.Error
	gotFull   bool
	tick      uint64
	firstTick uint64 // first update's tick after the last Joined
	states    map[string]*gamev1.PlayerState
	snaps     map[uint64]string // tick -> canonical state after it
	lastInput uint64
	dropped   uint64
	errs      []*gamev1.Error
	kicks     []*gamev1.Kick
	violation error
	end       error // the stream's end (nil: io.EOF); valid once done is closed
}

func play(in *instance, user string) *player {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+user))
	st, err := gamev1.NewGameServiceClient(in.dial()).Play(ctx)
	Expect(err).NotTo(HaveOccurred())
	p := &player{user: user, stream: st, cancel: cancel, done: make(chan struct{}), snaps: map[uint64]string{}}
	go p.read()
	DeferCleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

func (p *player) read() {
	defer close(p.done)
	for {
		ev, err := p.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			p.mu.Lock()
			p.end = err
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		p.observe(ev)
		p.mu.Unlock()
	}
}

func (p *player) fail(format string, args ...any) {
	if p.violation == nil {
		p.violation = fmt.Errorf("%s: %s", p.user, fmt.Sprintf(format, args...))
	}
}

func (p *player) observe(ev *gamev1.ServerEvent) {
	switch e := ev.GetEvent().(type) {
	case *gamev1.ServerEvent_Joined:
		p.joined, p.gotFull, p.states = e.Joined, false, map[string]*gamev1.PlayerState{}
	case *gamev1.ServerEvent_Error:
		p.errs = append(p.errs, e.Error)
		if e.Error.GetField() == "join.match" {
			p.joinErr = e.Error
		}
	case *gamev1.ServerEvent_Kick:
		p.kicks = append(p.kicks, e.Kick)
	case *gamev1.ServerEvent_Tick:
		u := e.Tick
		if p.joined == nil {
			p.fail("tick %d before Joined", u.GetTick())
			return
		}
		if !p.gotFull {
			if !u.GetFull() {
				p.fail("first update after Joined (tick %d) is not full", u.GetTick())
			}
			if u.GetTick() < p.joined.GetTick() {
				p.fail("first update's tick %d is before Joined's tick %d", u.GetTick(), p.joined.GetTick())
			}
			p.firstTick = u.GetTick()
		} else if u.GetTick() <= p.tick {
			p.fail("tick went from %d to %d: not strictly increasing", p.tick, u.GetTick())
		}
		p.gotFull, p.tick = true, u.GetTick()
		if u.GetFull() {
			p.states = map[string]*gamev1.PlayerState{}
		}
		for _, s := range u.GetPlayers() {
			if s.GetX() < 0 || s.GetX() > 100 || s.GetY() < 0 || s.GetY() > 100 {
				p.fail("tick %d: %s outside the map at (%v,%v)", u.GetTick(), s.GetPlayerId(), s.GetX(), s.GetY())
			}
			p.states[s.GetPlayerId()] = s
		}
		for _, id := range u.GetRemoved() {
			delete(p.states, id)
		}
		if u.GetYourLastInput() < p.lastInput {
			p.fail("tick %d: your_last_input went back from %d to %d", u.GetTick(), p.lastInput, u.GetYourLastInput())
		}
		if me := p.states[p.joined.GetPlayerId()]; me == nil {
			p.fail("tick %d: my player %s is not in the match state", u.GetTick(), p.joined.GetPlayerId())
		} else if me.GetLastInput() != u.GetYourLastInput() {
			p.fail("tick %d: my state's last_input %d != your_last_input %d", u.GetTick(), me.GetLastInput(), u.GetYourLastInput())
		}
		p.lastInput, p.dropped = u.GetYourLastInput(), u.GetDroppedInputs()
		if len(p.snaps) < 5000 {
			p.snaps[u.GetTick()] = canonical(p.states)
		}
	}
}

// canonical renders a match state as sorted "id@x,y/last" entries.
func canonical(states map[string]*gamev1.PlayerState) string {
	out := make([]string, 0, len(states))
	for id, s := range states {
		out = append(out, fmt.Sprintf("%s@%g,%g/%d", id, s.GetX(), s.GetY(), s.GetLastInput()))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func (p *player) send(ev *gamev1.ClientEvent) {
	GinkgoHelper()
	Expect(p.stream.Send(ev)).To(Succeed())
}

// join sends JoinMatch and waits for Joined and the first full update.
func (p *player) join(match string) *gamev1.Joined {
	GinkgoHelper()
	p.mu.Lock()
	p.joined, p.joinErr, p.gotFull = nil, nil, false
	p.mu.Unlock()
	p.send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: match}}})
	Eventually(func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.joinErr != nil {
			return StopTrying(fmt.Sprintf("%s: join %q refused: %v", p.user, match, p.joinErr))
		}
		if p.joined == nil || !p.gotFull {
			return errors.New("not joined yet")
		}
		return nil
	}).Should(Succeed())
	return p.id()
}

func (p *player) id() *gamev1.Joined {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.joined
}

func (p *player) input(seq uint64, dx, dy float64) {
	GinkgoHelper()
	p.send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Input{Input: &gamev1.Input{Seq: seq, Action: gamev1.Action_ACTION_MOVE, Dx: dx, Dy: dy}}})
}

// snapshot returns a copy of what the player has seen.
type snapshot struct {
	tick, firstTick, lastInput, dropped uint64
	states                              map[string]*gamev1.PlayerState
	snaps                               map[uint64]string
	kicks                               []*gamev1.Kick
	errs                                []*gamev1.Error
	violation                           error
	ended                               bool
	end                                 error
}

func (p *player) snapshot() snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := snapshot{
		tick: p.tick, firstTick: p.firstTick, lastInput: p.lastInput, dropped: p.dropped,
		states: map[string]*gamev1.PlayerState{}, snaps: map[uint64]string{},
		kicks: slices.Clone(p.kicks), errs: slices.Clone(p.errs), violation: p.violation,
	}
	for k, v := range p.states {
		s.states[k] = v
	}
	for k, v := range p.snaps {
		s.snaps[k] = v
	}
	select {
	case <-p.done:
		s.ended, s.end = true, p.end
	default:
	}
	return s
}

// closeAndDrain ends the stream the interop way and waits for its end.
func (p *player) closeAndDrain() error {
	GinkgoHelper()
	Expect(p.stream.CloseSend()).To(Succeed())
	Eventually(p.done).Should(BeClosed())
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.end
}
