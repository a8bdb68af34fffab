package game_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	"github.com/bidikit/bidikit/reference/acl"
	"github.com/bidikit/bidikit/reference/game"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/validate"
)

const (
	move = gamev1.Action_ACTION_MOVE
	stop = gamev1.Action_ACTION_STOP
)

// testConfig is a small map with the default limits and no flood kicks.
func testConfig() game.Config {
	cfg := game.DefaultConfig()
	cfg.Width, cfg.Height = 100, 100
	cfg.MaxStep = 10
	cfg.MaxInputsPerTick = 4
	cfg.FloodKickAfter = 1_000_000
	cfg.FloodWindow = time.Minute
	return cfg
}

func codeOf(err error) codes.Code { return status.Code(err) }

var _ = BeforeEach(func() {
	baseline := gleak.Goroutines()
	// Registered first, so it runs after every other cleanup of the spec.
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(15 * time.Second).WithPolling(50 * time.Millisecond).
			ShouldNot(gleak.HaveLeaked(baseline))
	})
})

var _ = Describe("Config", func() {
	It("binds every --game-* flag", func() {
		cfg := game.DefaultConfig()
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		cfg.RegisterFlags(fs)
		Expect(fs.Parse([]string{
			"--game-tick-rate=60", "--game-width=10", "--game-height=20", "--game-max-step=2",
			"--game-max-inputs-per-tick=3", "--game-max-players=7", "--game-max-matches=9",
			"--game-idle-expiry=2s", "--game-flood-kick-after=11", "--game-flood-window=3s",
		})).To(Succeed())
		Expect(cfg.TickRate).To(Equal(60))
		Expect([]float64{cfg.Width, cfg.Height, cfg.MaxStep}).To(Equal([]float64{10, 20, 2}))
		Expect([]int{cfg.MaxInputsPerTick, cfg.MaxPlayers, cfg.MaxMatches, cfg.FloodKickAfter}).To(Equal([]int{3, 7, 9, 11}))
		Expect(cfg.IdleExpiry).To(Equal(2 * time.Second))
		Expect(cfg.FloodWindow).To(Equal(3 * time.Second))
	})

	It("names the flag of a bad value once the config is bound to flags", func() {
		cfg := game.DefaultConfig()
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		cfg.RegisterFlags(fs)
		Expect(fs.Parse([]string{"--game-flood-window=0s"})).To(Succeed())
		_, err := game.New(cfg, metrics.Discard(), nil)
		Expect(err).To(MatchError(HavePrefix("Game.FloodWindow is 0s")))
		Expect(validate.FlagError(fs, err)).To(MatchError(HavePrefix("--game-flood-window is 0s")))
	})

	DescribeTable("New refuses unusable values, naming the field",
		func(mutate func(*game.Config), field string) {
			cfg := game.DefaultConfig()
			mutate(&cfg)
			_, err := game.New(cfg, metrics.Discard(), nil)
			Expect(err).To(MatchError(HavePrefix(field)))
		},
		Entry("tick rate 0", func(c *game.Config) { c.TickRate = 0 }, "Game.TickRate"),
		Entry("NaN width", func(c *game.Config) { c.Width = math.NaN() }, "Game.Width"),
		Entry("infinite height", func(c *game.Config) { c.Height = math.Inf(1) }, "Game.Height"),
		Entry("max step 0", func(c *game.Config) { c.MaxStep = 0 }, "Game.MaxStep"),
		Entry("0 inputs per tick", func(c *game.Config) { c.MaxInputsPerTick = 0 }, "Game.MaxInputsPerTick"),
		Entry("0 players", func(c *game.Config) { c.MaxPlayers = 0 }, "Game.MaxPlayers"),
		Entry("0 matches", func(c *game.Config) { c.MaxMatches = 0 }, "Game.MaxMatches"),
		Entry("no idle expiry", func(c *game.Config) { c.IdleExpiry = 0 }, "Game.IdleExpiry"),
		Entry("flood kick 0", func(c *game.Config) { c.FloodKickAfter = 0 }, "Game.FloodKickAfter"),
	)
})

var _ = Describe("Play", func() {
	It("answers a join with Joined and the rules, then updates with strictly increasing ticks", func(ctx SpecContext) {
		ts := startServer(testConfig())
		conn := ts.dial()
		a, b := play(ctx, conn, "alice"), play(ctx, conn, "bob")
		ja := a.join("arena")
		Expect(ja.GetRules().GetMaxStep()).To(Equal(10.0))
		Expect(ja.GetRules().GetWidth()).To(Equal(100.0))
		Expect(ja.GetRules().GetTickRateHz()).To(Equal(uint32(30)))
		Expect(ja.GetRules().GetMaxInputsPerTick()).To(Equal(uint32(4)))
		jb := b.join("arena")
		Expect(jb.GetPlayerId()).NotTo(Equal(ja.GetPlayerId()))

		Expect(a.input(1, move, 3, 4)).To(Succeed())
		// Both see alice's move; every update read was checked (ticks
		// strictly increasing, positions on the map).
		for _, c := range []*client{a, b} {
			c.readUntil(300, func(*gamev1.ServerEvent) bool {
				p := c.v.players[ja.GetPlayerId()]
				return p != nil && p.GetLastInput() == 1
			})
			p := c.v.players[ja.GetPlayerId()]
			Expect([]float64{p.GetX(), p.GetY()}).To(Equal([]float64{53, 54}))
		}
		Expect(a.v.last).To(Equal(uint64(1)))
		for range 30 {
			a.mustRecv()
			b.mustRecv()
		}
		Expect(a.v.updates).To(BeNumerically(">=", 30))
		Expect(b.v.players).To(HaveLen(2))
		Expect(a.closeAndDrain()).To(Succeed())
		Expect(b.closeAndDrain()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("clamps legal moves at the map's edges", func(ctx SpecContext) {
		ts := startServer(testConfig())
		c := play(ctx, ts.dial(), "walker")
		c.join("edge")
		// 12 steps of -10 from x=50 would reach -70 without clamping.
		for seq := uint64(1); seq <= 12; seq++ {
			Expect(c.input(seq, move, -10, 0)).To(Succeed())
			c.readUntil(300, func(*gamev1.ServerEvent) bool { return c.v.last == seq })
		}
		Expect(c.v.mine.GetX()).To(Equal(0.0))
		Expect(c.v.mine.GetY()).To(Equal(50.0))
	}, SpecTimeout(30*time.Second))

	DescribeTable("malicious inputs never move a player outside the rules",
		func(ctx SpecContext, bad func() []*gamev1.Input, rejected []uint64, wantCode codes.Code, wantField string, step float64) {
			ts := startServer(testConfig())
			c := play(ctx, ts.dial(), "cheater")
			c.join("arena")
			Expect(c.input(1, move, 3, 4)).To(Succeed())
			c.readUntil(300, func(*gamev1.ServerEvent) bool { return c.v.last == 1 })
			x0, y0 := c.v.mine.GetX(), c.v.mine.GetY()
			for _, seq := range rejected {
				c.v.rejected[seq] = true
			}
			c.v.stepPerInput = step
			updatesBefore := c.v.updates

			for _, in := range bad() {
				Expect(c.send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Input{Input: in}})).To(Succeed())
			}
			// A legal STOP marker, resent until processed (the inbox may be
			// full of the burst when it arrives).
			marker := uint64(1_000_000)
			Expect(c.input(marker, stop, 0, 0)).To(Succeed())
			for i := 0; c.v.last < 1_000_000; i++ {
				Expect(i).To(BeNumerically("<", 3000), "marker never processed")
				c.mustRecv()
				if i%10 == 9 && c.v.last < 1_000_000 {
					marker++
					Expect(c.input(marker, stop, 0, 0)).To(Succeed())
				}
			}
			for range 3 { // let any late error event arrive
				c.mustRecv()
			}

			Expect(c.v.errs).To(ContainElement(SatisfyAll(
				HaveField("Code", uint32(wantCode)),
				HaveField("Field", wantField),
				HaveField("Match", "arena"),
			)))
			Expect(c.v.dropped).To(BeNumerically(">=", len(rejected)))
			if step == 0 { // every bad input was rejected
				Expect(c.v.mine.GetX()).To(Equal(x0))
				Expect(c.v.mine.GetY()).To(Equal(y0))
			}
			// At most one error event per tick.
			Expect(len(c.v.errs)).To(BeNumerically("<=", c.v.updates-updatesBefore+1))
		},
		Entry("teleport dx=1e9", func() []*gamev1.Input {
			return []*gamev1.Input{{Seq: 2, Action: move, Dx: 1e9}}
		}, []uint64{2}, codes.InvalidArgument, "input.dx", 0.0),
		Entry("speed hack just over max_step", func() []*gamev1.Input {
			return []*gamev1.Input{{Seq: 2, Action: move, Dx: 6, Dy: 8.0001}}
		}, []uint64{2}, codes.InvalidArgument, "input.dx", 0.0),
		Entry("NaN dx", func() []*gamev1.Input {
			return []*gamev1.Input{{Seq: 2, Action: move, Dx: math.NaN()}}
		}, []uint64{2}, codes.InvalidArgument, "input.dx", 0.0),
		Entry("infinite dy", func() []*gamev1.Input {
			return []*gamev1.Input{{Seq: 2, Action: move, Dy: math.Inf(-1)}}
		}, []uint64{2}, codes.InvalidArgument, "input.dy", 0.0),
		Entry("overflowing move 1e308 x 1e308", func() []*gamev1.Input {
			return []*gamev1.Input{{Seq: 2, Action: move, Dx: 1e308, Dy: 1e308}}
		}, []uint64{2}, codes.InvalidArgument, "input.dx", 0.0),
		Entry("unknown action", func() []*gamev1.Input {
			return []*gamev1.Input{{Seq: 2, Action: gamev1.Action(7), Dx: 1}}
		}, []uint64{2}, codes.InvalidArgument, "input.action", 0.0),
		Entry("unspecified action", func() []*gamev1.Input {
			return []*gamev1.Input{{Seq: 2, Action: gamev1.Action_ACTION_UNSPECIFIED, Dx: 1}}
		}, []uint64{2}, codes.InvalidArgument, "input.action", 0.0),
		Entry("replayed seq", func() []*gamev1.Input {
			return []*gamev1.Input{{Seq: 1, Action: move, Dx: 5}}
		}, nil, codes.InvalidArgument, "input.seq", 0.0),
		Entry("decreasing seq", func() []*gamev1.Input {
			return []*gamev1.Input{{Seq: 0, Action: move, Dx: -5}}
		}, nil, codes.InvalidArgument, "input.seq", 0.0),
		Entry("flood of 1000 inputs in one tick", func() []*gamev1.Input {
			ins := make([]*gamev1.Input, 1000)
			for i := range ins {
				ins[i] = &gamev1.Input{Seq: uint64(i + 2), Action: move, Dx: 0.01}
			}
			return ins
		}, nil, codes.ResourceExhausted, "input", 0.01),
	)

	It("keeps serving honest players every tick while one floods, and kicks the flooder", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.FloodKickAfter = 30_000
		cfg.FloodWindow = time.Minute
		ts := startServer(cfg)
		conn := ts.dial()
		honest := play(ctx, conn, "honest")
		honest.join("arena")
		flooder := play(ctx, ts.dial(), "flooder")
		flooder.join("arena")
		flooder.v.stepPerInput = 0.001

		// The honest player reads every update and keeps one input in flight
		// (sends the next once the last was processed): never over the limit.
		var honestUpdates atomic.Int64
		honestDone := make(chan error, 1)
		stopHonest := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			seq := uint64(0)
			for {
				ev, err := honest.recv()
				if err != nil {
					honestDone <- err
					return
				}
				if ev.GetTick() != nil {
					honestUpdates.Add(1)
					select {
					case <-stopHonest:
						honestDone <- nil
						return
					default:
					}
					if honest.v.last == seq {
						seq++
						if err := honest.input(seq, move, 0.5, 0); err != nil {
							honestDone <- err
							return
						}
					}
				}
			}
		}()
		// The flooder reads until its stream ends.
		flooderEnd := make(chan error, 1)
		var kicked atomic.Bool
		go func() {
			defer GinkgoRecover()
			for {
				ev, err := flooder.recv()
				if err != nil {
					flooderEnd <- err
					return
				}
				if ev.GetKick() != nil {
					kicked.Store(true)
				}
			}
		}()

		// Bursts of 1000 legal inputs, each burst waiting for one more honest
		// update, until the flooder is kicked.
		startUpdates := honestUpdates.Load()
		seq := uint64(0)
		var floodErr error
		bursts := 0
	flood:
		for ; bursts < 200; bursts++ {
			for range 1000 {
				seq++
				if err := flooder.input(seq, move, 0.001, 0); err != nil {
					break flood // the server ended the stream
				}
			}
			before := honestUpdates.Load()
			for honestUpdates.Load() == before {
				select {
				case floodErr = <-flooderEnd:
					break flood
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
		duringFlood := honestUpdates.Load() - startUpdates
		if floodErr == nil {
			Eventually(flooderEnd).WithTimeout(20 * time.Second).Should(Receive(&floodErr))
		}
		Expect(codeOf(floodErr)).To(Equal(codes.ResourceExhausted), "flooder's stream status: %v", floodErr)
		Expect(kicked.Load()).To(BeTrue(), "a Kick precedes the status")
		Expect(flooder.v.kicks).To(ContainElement(HaveField("Reason", gamev1.Kick_REASON_INPUT_FLOOD)))
		Expect(flooder.v.dropped).To(BeNumerically(">", 1000))
		Expect(bursts).To(BeNumerically(">=", 25), "the flooder is kicked after ~30,000 drops, not before")
		Expect(duringFlood).To(BeNumerically(">=", 25), "honest updates while the flood went on")

		close(stopHonest)
		var honestErr error
		Eventually(honestDone).WithTimeout(20 * time.Second).Should(Receive(&honestErr))
		Expect(honestErr).NotTo(HaveOccurred())
		Expect(honest.v.dropped).To(BeZero(), "none of the honest player's inputs were dropped")
		Expect(honest.v.kicks).To(BeEmpty())
		Expect(honest.v.last).To(BeNumerically(">=", duringFlood/4), "the honest player's inputs kept being processed")
		Expect(ts.svc.Stats().Kicks).To(Equal(uint64(1)))
		Expect(honest.closeAndDrain()).To(Succeed())
	}, SpecTimeout(90*time.Second))

	It("sends a slow reader the newest state as a full update, not a backlog", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.Width, cfg.Height = 1000, 1000
		cfg.TickRate = 60
		ts := startServer(cfg)
		// The bots' long ids make every delta ~3 KB, so the 64 KiB stream
		// windows hold only a few dozen updates.
		botConn := ts.dial()
		const bots = 20
		var maxTick atomic.Uint64
		botErrs := make(chan error, bots)
		for i := range bots {
			user := strings.Repeat("b", 110) + string(rune('A'+i))
			b := play(ctx, botConn, user)
			b.join("busy")
			go func() {
				defer GinkgoRecover()
				seq := uint64(0)
				for {
					ev, err := b.recv()
					if err != nil {
						if codeOf(err) == codes.Canceled || errors.Is(err, context.Canceled) {
							err = nil
						}
						botErrs <- err
						return
					}
					if u := ev.GetTick(); u != nil {
						if u.GetTick() > maxTick.Load() {
							maxTick.Store(u.GetTick())
						}
						seq++
						if err := b.input(seq, stop, 0, 0); err != nil {
							botErrs <- nil
							return
						}
					}
				}
			}()
		}
		slowConn := ts.dial(grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		slow := play(ctx, slowConn, "slow")
		slow.join("busy")
		for range 5 {
			slow.mustRecv()
		}
		t0 := slow.v.tick
		resyncs0 := ts.svc.Stats().Resyncs

		// Stop reading while the match runs on for 240+ ticks.
		Eventually(func() uint64 { return maxTick.Load() }).WithTimeout(60 * time.Second).
			Should(BeNumerically(">=", t0+240))
		Eventually(func() uint64 { return ts.svc.Stats().Resyncs - resyncs0 }).WithTimeout(30 * time.Second).
			Should(BeNumerically(">=", 30))
		Expect(ts.queueDepth()).To(BeNumerically(">", 0), "the unread stream's queue shows in bidikit_send_queue_depth")
		tResume := maxTick.Load()
		fullsBefore := slow.v.fulls

		n := 0
		for slow.v.tick < tResume {
			slow.mustRecv()
			n++
			Expect(n).To(BeNumerically("<", 10_000))
		}
		paused := int(tResume - t0)
		Expect(n).To(BeNumerically("<", paused/2),
			"read %d updates to catch up after a pause of %d ticks: a backlog", n, paused)
		Expect(slow.v.fulls).To(BeNumerically(">", fullsBefore), "caught up through a full update")
		Expect(slow.v.jumps).To(BeNumerically(">=", 1), "stale ticks were skipped")
		Expect(slow.v.players).To(HaveLen(bots + 1))
		Expect(slow.closeAndDrain()).To(Succeed())
		ts.svc.Close()
		Expect(ts.queueDepth()).To(BeZero(), "a stopped match gives back its share of the queue-depth gauge")
	}, SpecTimeout(120*time.Second))

	It("refuses joins over the match capacity and the match limit, keeping the stream open", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.MaxPlayers = 2
		cfg.MaxMatches = 2
		ts := startServer(cfg)
		conn := ts.dial()
		a, b, c := play(ctx, conn, "a"), play(ctx, conn, "b"), play(ctx, conn, "c")
		ja := a.join("m")
		b.join("m")
		e := c.joinErr("m")
		Expect(e.GetCode()).To(Equal(uint32(codes.ResourceExhausted)))
		Expect(e.GetField()).To(Equal("join.match"))
		Expect(e.GetMessage()).To(ContainSubstring("full"))

		c.join("other")
		d := play(ctx, conn, "d")
		e = d.joinErr("third")
		Expect(e.GetCode()).To(Equal(uint32(codes.ResourceExhausted)))
		Expect(e.GetMessage()).To(ContainSubstring("maximum of 2 matches"))

		// a leaves: a gets Left, b sees a removed, c can take the place.
		Expect(a.send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Leave{Leave: &gamev1.LeaveMatch{Match: "m"}}})).To(Succeed())
		a.readUntil(300, func(ev *gamev1.ServerEvent) bool { return ev.GetLeft() != nil })
		b.readUntil(300, func(*gamev1.ServerEvent) bool { return b.v.players[ja.GetPlayerId()] == nil })
		Expect(c.send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Leave{Leave: &gamev1.LeaveMatch{Match: "other"}}})).To(Succeed())
		c.readUntil(300, func(ev *gamev1.ServerEvent) bool { return ev.GetLeft() != nil })
		c.join("m")
		Expect(c.v.players).To(HaveLen(2))
		for _, cl := range []*client{a, b, c, d} {
			Expect(cl.closeAndDrain()).To(Succeed())
		}
	}, SpecTimeout(30*time.Second))

	It("refuses a join the ACL denies with PERMISSION_DENIED, keeping the stream open; listed users play", func(ctx SpecContext) {
		list, err := acl.Parse("acl.yaml", []byte("matches:\n  final: [carol]\n  closed: []\n"))
		Expect(err).NotTo(HaveOccurred())
		cfg := testConfig()
		cfg.Access = list.Matches()
		ts := startServer(cfg)
		conn := ts.dial()
		carol, dave := play(ctx, conn, "carol"), play(ctx, conn, "dave")

		for _, m := range []string{"final", "closed"} {
			e := dave.joinErr(m)
			Expect(e.GetCode()).To(Equal(uint32(codes.PermissionDenied)), "dave joins %q", m)
			Expect(e.GetField()).To(Equal("join.match"))
			Expect(e.GetMatch()).To(Equal(m))
			Expect(e.GetMessage()).To(ContainSubstring(`"dave"`))
		}
		Expect(carol.joinErr("closed").GetCode()).To(Equal(uint32(codes.PermissionDenied)))

		// The listed user joins and plays; the refused stream stays usable
		// for an unlisted match.
		jc := carol.join("final")
		Expect(carol.input(1, move, 3, 4)).To(Succeed())
		carol.readUntil(300, func(*gamev1.ServerEvent) bool {
			p := carol.v.players[jc.GetPlayerId()]
			return p != nil && p.GetLastInput() == 1
		})
		Expect(carol.v.players).To(HaveLen(1), "dave never entered the match")
		dave.join("lobby")
		Expect(ts.svc.Stats().Players).To(Equal(int64(2)))
		Expect(carol.closeAndDrain()).To(Succeed())
		Expect(dave.closeAndDrain()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("answers misplaced events with Error events", func(ctx SpecContext) {
		ts := startServer(testConfig())
		c := play(ctx, ts.dial(), "p")
		errOf := func(ev *gamev1.ClientEvent) *gamev1.Error {
			GinkgoHelper()
			Expect(c.send(ev)).To(Succeed())
			return c.readUntil(300, func(ev *gamev1.ServerEvent) bool { return ev.GetError() != nil }).GetError()
		}
		e := errOf(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Input{Input: &gamev1.Input{Seq: 1, Action: move}}})
		Expect([]any{e.GetCode(), e.GetField()}).To(Equal([]any{uint32(codes.FailedPrecondition), "input.match"}))
		e = errOf(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: "bad name!"}}})
		Expect([]any{e.GetCode(), e.GetField()}).To(Equal([]any{uint32(codes.InvalidArgument), "join.match"}))
		e = errOf(&gamev1.ClientEvent{})
		Expect([]any{e.GetCode(), e.GetField()}).To(Equal([]any{uint32(codes.InvalidArgument), "event"}))

		c.join("one")
		e = errOf(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: "two"}}})
		Expect([]any{e.GetCode(), e.GetField()}).To(Equal([]any{uint32(codes.FailedPrecondition), "join.match"}))
		e = errOf(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Leave{Leave: &gamev1.LeaveMatch{Match: "two"}}})
		Expect([]any{e.GetCode(), e.GetField()}).To(Equal([]any{uint32(codes.FailedPrecondition), "leave.match"}))
		e = errOf(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Input{Input: &gamev1.Input{Match: "two", Seq: 1, Action: move}}})
		Expect([]any{e.GetCode(), e.GetField()}).To(Equal([]any{uint32(codes.FailedPrecondition), "input.match"}))
		Expect(c.v.match).To(Equal("one"))
		Expect(c.closeAndDrain()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("expires an idle match: its loop stops and the match is forgotten", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.IdleExpiry = 300 * time.Millisecond
		ts := startServer(cfg)
		c := play(ctx, ts.dial(), "p")
		c.join("brief")
		for range 20 {
			c.mustRecv()
		}
		oldTick := c.v.tick
		Expect(ts.svc.Stats().Matches).To(Equal(1))
		Expect(c.send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Leave{Leave: &gamev1.LeaveMatch{Match: "brief"}}})).To(Succeed())
		c.readUntil(300, func(ev *gamev1.ServerEvent) bool { return ev.GetLeft() != nil })
		Eventually(func() game.Stats { return ts.svc.Stats() }).WithTimeout(10 * time.Second).
			Should(SatisfyAll(HaveField("Matches", 0), HaveField("Players", int64(0))))
		// A new match of the same name starts afresh.
		j := c.join("brief")
		Expect(j.GetTick()).To(BeNumerically("<", oldTick))
		Expect(c.closeAndDrain()).To(Succeed())
		Eventually(func() int { return ts.svc.Stats().Matches }).WithTimeout(10 * time.Second).Should(BeZero())
	}, SpecTimeout(30*time.Second))

	It("cleans up after streams that end cleanly or abruptly", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.IdleExpiry = 200 * time.Millisecond
		ts := startServer(cfg)
		conn := ts.dial()
		a, b, c := play(ctx, conn, "a"), play(ctx, conn, "b"), play(ctx, conn, "c")
		ja := a.join("m")
		jb := b.join("m")
		c.join("m")
		Expect(ts.svc.Stats()).To(SatisfyAll(HaveField("Streams", 3), HaveField("Players", int64(3))))

		Expect(a.closeAndDrain()).To(Succeed()) // CloseSend, read to io.EOF: status OK
		c.readUntil(300, func(*gamev1.ServerEvent) bool { return c.v.players[ja.GetPlayerId()] == nil })
		b.cancel() // abrupt
		c.readUntil(300, func(*gamev1.ServerEvent) bool { return c.v.players[jb.GetPlayerId()] == nil })
		Expect(c.v.players).To(HaveLen(1))
		Eventually(func() game.Stats { return ts.svc.Stats() }).WithTimeout(10 * time.Second).
			Should(SatisfyAll(HaveField("Streams", 1), HaveField("Players", int64(1))))
		Expect(c.closeAndDrain()).To(Succeed())
		Eventually(func() game.Stats { return ts.svc.Stats() }).WithTimeout(10 * time.Second).
			Should(SatisfyAll(HaveField("Streams", 0), HaveField("Players", int64(0)), HaveField("Matches", 0)))
	}, SpecTimeout(30*time.Second))

	It("ends a stream that sends an undecodable message with INVALID_ARGUMENT", func(ctx SpecContext) {
		ts := startServer(testConfig())
		conn := ts.dial()
		c := play(ctx, conn, "p")
		c.join("m")
		raw, err := conn.NewStream(withToken(ctx, "mallory"), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
			"/bidikit.game.v1.GameService/Play", grpc.ForceCodecV2(rawCodec{}))
		Expect(err).NotTo(HaveOccurred())
		Expect(raw.SendMsg([]byte{0x0a, 0xff, 0xff, 0xff})).To(Succeed()) // field 1, truncated length
		var out []byte
		err = raw.RecvMsg(&out)
		for err == nil {
			err = raw.RecvMsg(&out)
		}
		Expect(codeOf(err)).To(Equal(codes.InvalidArgument))
		Expect(status.Convert(err).Message()).To(ContainSubstring("malformed message (4 bytes)"))
		c.mustRecv() // others unaffected
		Expect(c.closeAndDrain()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("refuses streams without a token", func(ctx SpecContext) {
		ts := startServer(testConfig())
		stream, err := gamev1.NewGameServiceClient(ts.dial()).Play(ctx)
		Expect(err).NotTo(HaveOccurred())
		_, err = stream.Recv()
		Expect(codeOf(err)).To(Equal(codes.Unauthenticated))
	}, SpecTimeout(30*time.Second))

	It("drains: Kick REASON_SHUTDOWN, then UNAVAILABLE; new streams refused", func(ctx SpecContext) {
		ts := startServer(testConfig())
		conn := ts.dial()
		a, b := play(ctx, conn, "a"), play(ctx, conn, "b")
		a.join("m")
		c := play(ctx, conn, "c") // not in a match
		Eventually(func() int { return ts.svc.Stats().Streams }).Should(Equal(3))

		drained := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			drained <- ts.svc.Drain(dctx)
		}()
		for _, cl := range []*client{a, b, c} {
			var err error
			for err == nil {
				_, err = cl.recv()
			}
			Expect(codeOf(err)).To(Equal(codes.Unavailable), "%s: %v", cl.user, err)
			Expect(status.Convert(err).Message()).To(Equal("server shutting down"))
			Expect(cl.v.kicks).To(ContainElement(HaveField("Reason", gamev1.Kick_REASON_SHUTDOWN)))
		}
		Expect(a.v.kicks[0].GetMatch()).To(Equal("m"))
		Eventually(drained).WithTimeout(20 * time.Second).Should(Receive(BeNil()))
		d := play(ctx, conn, "d")
		_, err := d.recv()
		Expect(codeOf(err)).To(Equal(codes.Unavailable))
	}, SpecTimeout(30*time.Second))

	It("ends players' streams with UNAVAILABLE when closed", func(ctx SpecContext) {
		ts := startServer(testConfig())
		a := play(ctx, ts.dial(), "a")
		a.join("m")
		Expect(ts.svc.Close()).To(Succeed())
		var err error
		for err == nil {
			_, err = a.recv()
		}
		Expect(codeOf(err)).To(Equal(codes.Unavailable))
		Expect(a.v.kicks).To(ContainElement(HaveField("Reason", gamev1.Kick_REASON_SHUTDOWN)))
	}, SpecTimeout(30*time.Second))
})

// rawCodec sends []byte as they are: for malformed messages.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
