package game_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/game"
	"github.com/bidikit/bidikit/reference/metrics"
)

var (
	benchPlayers   = flag.Int("game.players", 5000, "BenchmarkMatches: players")
	benchMatches   = flag.Int("game.matches", 50, "BenchmarkMatches: matches")
	benchPerConn   = flag.Int("game.streams-per-conn", 50, "BenchmarkMatches: streams per client connection")
	benchInputEach = flag.Int("game.input-every", 10, "BenchmarkMatches: each player sends one move every N ticks")
	benchDuration  = flag.Duration("game.duration", 10*time.Second, "BenchmarkMatches: measured time after the ramp")
)

// BenchmarkMatches runs -game.players players in -game.matches matches at 30
// Hz (players share connections, -game.streams-per-conn streams each) and
// reports the tick computation time (Service.TickStats) and the
// tick-to-delivery time (server_unix_nanos to the client's Recv). The
// workload runs once whatever b.N is; run it with -benchtime=1x:
//
//	go test -run '^$' -bench BenchmarkMatches -benchtime=1x ./reference/game/
func BenchmarkMatches(b *testing.B) {
	cfg := game.DefaultConfig()
	cfg.MaxPlayers = (*benchPlayers + *benchMatches - 1) / *benchMatches
	svc, err := game.New(cfg, metrics.Discard(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ChainStreamInterceptor(auth.StreamInterceptor(auth.DevMode{})))
	svc.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	defer func() {
		gs.Stop()
		_ = svc.Close()
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nConns := (*benchPlayers + *benchPerConn - 1) / *benchPerConn
	conns := make([]*grpc.ClientConn, nConns)
	hists := make([]*lockedHist, nConns)
	for i := range conns {
		conns[i], err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close()
		hists[i] = &lockedHist{h: hdrhistogram.New(1, int64(10*time.Second), 2)}
	}

	var measuring atomic.Bool
	var joined, updates, jumps, failures atomic.Int64
	var wg sync.WaitGroup
	for i := range *benchPlayers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("p%d", i)
			stream, err := gamev1.NewGameServiceClient(conns[i / *benchPerConn]).Play(withToken(ctx, user))
			if err != nil {
				failures.Add(1)
				return
			}
			match := fmt.Sprintf("m%d", i%*benchMatches)
			if err := stream.Send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: match}}}); err != nil {
				failures.Add(1)
				return
			}
			h := hists[i / *benchPerConn]
			var seq, lastTick uint64
			dx := 1.0
			for {
				ev, err := stream.Recv()
				if err != nil {
					if ctx.Err() == nil {
						failures.Add(1)
					}
					return
				}
				now := time.Now().UnixNano()
				switch e := ev.GetEvent().(type) {
				case *gamev1.ServerEvent_Joined:
					joined.Add(1)
				case *gamev1.ServerEvent_Tick:
					u := e.Tick
					if measuring.Load() {
						updates.Add(1)
						if lastTick != 0 && u.GetTick() > lastTick+1 {
							jumps.Add(1)
						}
						h.record(now - u.GetServerUnixNanos())
					}
					lastTick = u.GetTick()
					if (u.GetTick()+uint64(i))%uint64(*benchInputEach) == 0 {
						seq++
						if seq%50 == 0 {
							dx = -dx
						}
						if err := stream.Send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Input{Input: &gamev1.Input{
							Match: match, Seq: seq, Action: gamev1.Action_ACTION_MOVE, Dx: dx, ClientSentUnixNanos: now,
						}}}); err != nil {
							return
						}
					}
				}
			}
		}()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for joined.Load()+failures.Load() < int64(*benchPlayers) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if f := failures.Load(); f > 0 {
		b.Fatalf("%d players failed to start", f)
	}
	time.Sleep(2 * time.Second) // settle after the ramp
	svc.ResetTickStats()
	measuring.Store(true)
	b.ResetTimer()
	time.Sleep(*benchDuration)
	measuring.Store(false)
	b.StopTimer()
	ts := svc.TickStats()
	all := hdrhistogram.New(1, int64(10*time.Second), 2)
	for _, h := range hists {
		h.mu.Lock()
		all.Merge(h.h)
		h.mu.Unlock()
	}
	st := svc.Stats()
	cancel()
	wg.Wait()

	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	b.ReportMetric(ms(int64(ts.P50)), "tick-p50-ms")
	b.ReportMetric(ms(int64(ts.P99)), "tick-p99-ms")
	b.ReportMetric(ms(int64(ts.Max)), "tick-max-ms")
	b.ReportMetric(ms(all.ValueAtQuantile(50)), "deliver-p50-ms")
	b.ReportMetric(ms(all.ValueAtQuantile(99)), "deliver-p99-ms")
	b.ReportMetric(float64(updates.Load())/benchDuration.Seconds(), "updates/s")
	b.ReportMetric(float64(jumps.Load()), "tick-jumps")
	b.Logf("players=%d matches=%d conns=%d ticks=%d tick p50=%v p99=%v max=%v; delivery p50=%.2fms p99=%.2fms max=%.2fms; updates=%d (%.0f/s, expected %.0f/s) jumps=%d resyncs=%d dropped=%d",
		*benchPlayers, st.Matches, nConns, ts.Count, ts.P50, ts.P99, ts.Max,
		ms(all.ValueAtQuantile(50)), ms(all.ValueAtQuantile(99)), ms(all.Max()),
		updates.Load(), float64(updates.Load())/benchDuration.Seconds(), float64(*benchPlayers*cfg.TickRate),
		jumps.Load(), st.Resyncs, st.Dropped)
}

type lockedHist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func (l *lockedHist) record(ns int64) {
	if ns < 1 {
		ns = 1
	}
	l.mu.Lock()
	_ = l.h.RecordValue(ns)
	l.mu.Unlock()
}
