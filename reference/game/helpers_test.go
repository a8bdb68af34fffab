package game_test

import (
	"context"
	"fmt"
	dto "github.com/prometheus/client_model/go"
	"io"
	"log/slog"
	"math"
	"net"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/game"
	"github.com/bidikit/bidikit/reference/metrics"
)

// testServer is a game.Service on an in-process gRPC server on 127.0.0.1:0.
type testServer struct {
	svc  *game.Service
	m    *metrics.Set
	addr string
}

// queueDepth reads the service's bidikit_send_queue_depth gauge.
func (ts *testServer) queueDepth() float64 {
	var d dto.Metric
	Expect(ts.m.QueueDepth.WithLabelValues("game").Write(&d)).To(Succeed())
	return d.GetGauge().GetValue()
}

// startServer starts cfg's service and registers its shutdown with
// DeferCleanup.
func startServer(cfg game.Config) *testServer {
	m := metrics.Discard()
	svc, err := game.New(cfg, m, slog.New(slog.DiscardHandler))
	Expect(err).NotTo(HaveOccurred())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	gs := grpc.NewServer(grpc.ChainStreamInterceptor(auth.StreamInterceptor(auth.DevMode{})))
	svc.Register(gs)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	DeferCleanup(func() {
		gs.Stop()
		<-served
		Expect(svc.Close()).To(Succeed())
	})
	return &testServer{svc: svc, m: m, addr: lis.Addr().String()}
}

// dial opens a client connection closed by DeferCleanup.
func (ts *testServer) dial(opts ...grpc.DialOption) *grpc.ClientConn {
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient(ts.addr, opts...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return conn
}

// client is one Play stream with a view that checks every event it reads.
type client struct {
	user   string
	stream gamev1.GameService_PlayClient
	cancel context.CancelFunc
	v      *view
}

func withToken(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+user)
}

// play opens a stream as user; it is cancelled by DeferCleanup.
func play(ctx context.Context, conn *grpc.ClientConn, user string) *client {
	sctx, cancel := context.WithCancel(withToken(ctx, user))
	DeferCleanup(cancel)
	stream, err := gamev1.NewGameServiceClient(conn).Play(sctx)
	Expect(err).NotTo(HaveOccurred())
	return &client{user: user, stream: stream, cancel: cancel, v: newView()}
}

func (c *client) send(ev *gamev1.ClientEvent) error { return c.stream.Send(ev) }

func (c *client) input(seq uint64, a gamev1.Action, dx, dy float64) error {
	return c.send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Input{Input: &gamev1.Input{
		Seq: seq, Action: a, Dx: dx, Dy: dy,
	}}})
}

// recv reads one event and checks it against the game's invariants; a
// violation is returned as an error (with the event).
func (c *client) recv() (*gamev1.ServerEvent, error) {
	ev, err := c.stream.Recv()
	if err != nil {
		return nil, err
	}
	if err := c.v.observe(ev); err != nil {
		return ev, fmt.Errorf("%s: %w", c.user, err)
	}
	return ev, nil
}

func (c *client) mustRecv() *gamev1.ServerEvent {
	GinkgoHelper()
	ev, err := c.recv()
	Expect(err).NotTo(HaveOccurred())
	return ev
}

// readUntil reads (and checks) events until pred holds, at most max events.
func (c *client) readUntil(max int, pred func(*gamev1.ServerEvent) bool) *gamev1.ServerEvent {
	GinkgoHelper()
	for range max {
		if ev := c.mustRecv(); pred(ev) {
			return ev
		}
	}
	Fail(fmt.Sprintf("%s: condition not met within %d events", c.user, max))
	return nil
}

// join joins match and reads Joined and the full update that follows it.
func (c *client) join(match string) *gamev1.Joined {
	GinkgoHelper()
	Expect(c.send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: match}}})).To(Succeed())
	ev := c.readUntil(100, func(ev *gamev1.ServerEvent) bool { return ev.GetJoined() != nil || ev.GetError() != nil })
	Expect(ev.GetError()).To(BeNil(), "join %q", match)
	first := c.mustRecv()
	Expect(first.GetTick()).NotTo(BeNil(), "Joined is followed by a TickUpdate")
	Expect(first.GetTick().GetFull()).To(BeTrue(), "the first update after Joined is full")
	return ev.GetJoined()
}

// joinErr sends a JoinMatch expected to fail and returns the Error event.
func (c *client) joinErr(match string) *gamev1.Error {
	GinkgoHelper()
	Expect(c.send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: match}}})).To(Succeed())
	ev := c.readUntil(100, func(ev *gamev1.ServerEvent) bool { return ev.GetJoined() != nil || ev.GetError() != nil })
	Expect(ev.GetJoined()).To(BeNil(), "join %q should be refused", match)
	return ev.GetError()
}

// closeAndDrain ends the stream the interop way: CloseSend, read to the end.
func (c *client) closeAndDrain() error {
	GinkgoHelper()
	Expect(c.stream.CloseSend()).To(Succeed())
	for range 100_000 {
		if _, err := c.recv(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
	return fmt.Errorf("%s: stream did not end", c.user)
}

// view is a player's picture of its match, rebuilt from the events it reads,
// and the checker of the invariants every update must keep.
type view struct {
	rules   *gamev1.Rules
	match   string
	me      string
	minTick uint64 // after Joined: the next update's tick is >= this
	tick    uint64 // last update's tick
	inMatch bool
	gotTick bool

	players map[string]*gamev1.PlayerState
	mine    *gamev1.PlayerState // my state as last seen
	mineAt  uint64              // tick at which mine was seen
	last    uint64              // your_last_input
	dropped uint64

	// rejected lists seqs that must never be reported as processed.
	rejected map[uint64]bool
	// stepPerInput, when set, is the length of every move the player sends:
	// observe then checks that at most max_inputs_per_tick inputs were
	// applied per tick (by the distance moved).
	stepPerInput float64

	updates int
	fulls   int
	jumps   int // updates whose tick is more than one past the previous
	errs    []*gamev1.Error
	kicks   []*gamev1.Kick
	left    int
}

func newView() *view {
	return &view{players: map[string]*gamev1.PlayerState{}, rejected: map[uint64]bool{}}
}

func (v *view) inBounds(p *gamev1.PlayerState) error {
	for _, c := range []float64{p.GetX(), p.GetY()} {
		if math.IsNaN(c) || math.IsInf(c, 0) {
			return fmt.Errorf("player %s has non-finite position (%v, %v)", p.GetPlayerId(), p.GetX(), p.GetY())
		}
	}
	if p.GetX() < 0 || p.GetX() > v.rules.GetWidth() || p.GetY() < 0 || p.GetY() > v.rules.GetHeight() {
		return fmt.Errorf("player %s at (%v, %v) is outside the map [0,%v]x[0,%v]",
			p.GetPlayerId(), p.GetX(), p.GetY(), v.rules.GetWidth(), v.rules.GetHeight())
	}
	return nil
}

// observe applies ev to the view and returns the first broken invariant.
func (v *view) observe(ev *gamev1.ServerEvent) error {
	switch e := ev.GetEvent().(type) {
	case *gamev1.ServerEvent_Joined:
		j := e.Joined
		if j.GetRules() == nil || j.GetPlayerId() == "" {
			return fmt.Errorf("joined without rules or player id: %v", j)
		}
		v.rules, v.match, v.me, v.inMatch = j.GetRules(), j.GetMatch(), j.GetPlayerId(), true
		v.minTick, v.gotTick = j.GetTick(), false
		v.players = map[string]*gamev1.PlayerState{}
		v.mine, v.last, v.dropped = nil, 0, 0
	case *gamev1.ServerEvent_Left:
		v.inMatch = false
		v.left++
	case *gamev1.ServerEvent_Error:
		v.errs = append(v.errs, e.Error)
	case *gamev1.ServerEvent_Kick:
		v.kicks = append(v.kicks, e.Kick)
	case *gamev1.ServerEvent_Tick:
		return v.update(e.Tick)
	default:
		return fmt.Errorf("server event with no event set")
	}
	return nil
}

func (v *view) update(u *gamev1.TickUpdate) error {
	if !v.inMatch {
		return fmt.Errorf("tick update %d for match %q outside a match", u.GetTick(), u.GetMatch())
	}
	if u.GetMatch() != v.match {
		return fmt.Errorf("tick update for match %q while in %q", u.GetMatch(), v.match)
	}
	if !v.gotTick {
		if !u.GetFull() {
			return fmt.Errorf("first update after Joined (tick %d) is not full", u.GetTick())
		}
		if u.GetTick() < v.minTick {
			return fmt.Errorf("first update's tick %d is before Joined's tick %d", u.GetTick(), v.minTick)
		}
	} else {
		if u.GetTick() <= v.tick {
			return fmt.Errorf("tick went from %d to %d: not strictly increasing", v.tick, u.GetTick())
		}
		if u.GetTick() > v.tick+1 {
			v.jumps++
		}
	}
	v.tick, v.gotTick = u.GetTick(), true
	v.updates++
	if u.GetFull() {
		v.fulls++
		v.players = map[string]*gamev1.PlayerState{}
	}
	for _, p := range u.GetPlayers() {
		if err := v.inBounds(p); err != nil {
			return fmt.Errorf("tick %d: %w", u.GetTick(), err)
		}
		v.players[p.GetPlayerId()] = p
	}
	for _, id := range u.GetRemoved() {
		delete(v.players, id)
	}
	if u.GetYourLastInput() < v.last {
		return fmt.Errorf("tick %d: your_last_input went back from %d to %d", u.GetTick(), v.last, u.GetYourLastInput())
	}
	if v.rejected[u.GetYourLastInput()] {
		return fmt.Errorf("tick %d: rejected input %d reported as processed", u.GetTick(), u.GetYourLastInput())
	}
	if u.GetDroppedInputs() < v.dropped {
		return fmt.Errorf("tick %d: dropped_inputs went back from %d to %d", u.GetTick(), v.dropped, u.GetDroppedInputs())
	}
	v.dropped = u.GetDroppedInputs()
	me, ok := v.players[v.me]
	if u.GetFull() && !ok {
		return fmt.Errorf("tick %d: full update without me (%s)", u.GetTick(), v.me)
	}
	if ok && me.GetLastInput() != u.GetYourLastInput() {
		return fmt.Errorf("tick %d: my state's last_input %d != your_last_input %d", u.GetTick(), me.GetLastInput(), u.GetYourLastInput())
	}
	if ok && v.mine != nil && me != v.mine {
		n := me.GetLastInput() - v.mine.GetLastInput() // inputs processed since, at most
		d := math.Hypot(me.GetX()-v.mine.GetX(), me.GetY()-v.mine.GetY())
		if d > float64(n)*v.rules.GetMaxStep()+1e-9 {
			return fmt.Errorf("tick %d: I moved %g with %d inputs processed (max_step %g)", u.GetTick(), d, n, v.rules.GetMaxStep())
		}
		if v.stepPerInput > 0 {
			ticks := u.GetTick() - v.mineAt
			if limit := float64(v.rules.GetMaxInputsPerTick()*uint32(ticks)) * v.stepPerInput; d > limit+1e-9 {
				return fmt.Errorf("tick %d: I moved %g in %d ticks: more than %d inputs of %g per tick", u.GetTick(), d, ticks, v.rules.GetMaxInputsPerTick(), v.stepPerInput)
			}
		}
	}
	if ok {
		v.mine, v.mineAt = me, u.GetTick()
	}
	v.last = u.GetYourLastInput()
	return nil
}
