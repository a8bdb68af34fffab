package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
)

// runGame runs game-ticks with bench's own generated-stub players: Clients
// players spread round-robin over Scopes matches, one Play stream each
// (p.StreamsPerConn of them per connection). Once every player has joined, each sends a small move
// at p.Rate for p.Duration while its receive loop counts tick updates and
// records tick-to-delivery latency (the update's server_unix_nanos to its
// arrival; client and server share the clock on one host).
func runGame(ctx context.Context, target string, p Params) (Result, error) {
	prefix := "bench-" + runID()
	hist := NewShardedHist()
	var sent, ticks atomic.Int64
	errs := newErrCount()
	joined := make(chan struct{}, p.Clients)
	startC := make(chan struct{})
	var measureEnd atomic.Int64
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := newConnPool(target, p.StreamsPerConn)
	defer conns.Close()
	var wg sync.WaitGroup
	for i := 0; i < p.Clients; i++ {
		wg.Go(func() {
			match := prefix + "-" + strconv.Itoa(i%p.Scopes)
			if err := gamePlayer(runCtx, conns, "bench-"+strconv.Itoa(i), match, p, i, joined, startC, &measureEnd, hist, &sent, &ticks, errs); err != nil {
				errs.add(err)
				select {
				case joined <- struct{}{}:
				default:
				}
			}
		})
	}
	if err := awaitJoined(ctx, joined, p.Clients, "game-ticks", "players", cancel, &wg); err != nil {
		return Result{}, err
	}
	measureEnd.Store(time.Now().Add(p.Duration).UnixNano())
	began := time.Now()
	close(startC)
	wg.Wait()
	elapsed := min(time.Since(began), p.Duration)
	res := Result{Tool: "bidikit-loop", DurationS: elapsed.Seconds(), Messages: sent.Load(), Deliveries: ticks.Load(),
		LatencyMS: Summarize(hist.Merged()), LatencyOf: "tick-to-delivery", Errors: errs.snapshot(),
		Params: map[string]string{"players": strconv.Itoa(p.Clients), "matches": strconv.Itoa(p.Scopes),
			"inputs_per_sec_per_player": strconv.FormatFloat(p.Rate, 'g', -1, 64), "duration": p.Duration.String(),
			"streams_per_conn": strconv.Itoa(p.StreamsPerConn)}}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if ticks.Load() == 0 {
		return res, fmt.Errorf("game-ticks: no tick update arrived (errors: %v)", res.Errors)
	}
	return res, nil
}

// gamePlayer is one bare player; its send and receive loops own their own
// errors, joined by errgroup.
func gamePlayer(ctx context.Context, conns *connPool, user, match string, p Params, i int,
	joined chan<- struct{}, startC <-chan struct{}, measureEnd *atomic.Int64,
	hist *ShardedHist, sent, ticks *atomic.Int64, errs *errCount) error {
	cc, err := conns.get(i)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(withToken(ctx, user))
	defer cancel()
	stream, err := gamev1.NewGameServiceClient(cc).Play(sctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: match}}}); err != nil {
		return err
	}
	gotJoined := make(chan struct{})
	g := new(errgroup.Group)
	g.Go(func() error {
		var once sync.Once
		for {
			ev, err := stream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				if status.Code(err) == codes.Canceled && ctx.Err() == nil {
					return nil
				}
				return err
			}
			now := time.Now().UnixNano()
			switch e := ev.Event.(type) {
			case *gamev1.ServerEvent_Joined:
				once.Do(func() { close(gotJoined) })
			case *gamev1.ServerEvent_Tick:
				if end := measureEnd.Load(); end != 0 && now <= end {
					ticks.Add(1)
					if e.Tick.ServerUnixNanos > 0 {
						hist.Record(i, time.Duration(now-e.Tick.ServerUnixNanos))
					}
				}
			case *gamev1.ServerEvent_Kick:
				return fmt.Errorf("kicked: %v", e.Kick)
			case *gamev1.ServerEvent_Error:
				// Recoverable (e.g. inputs over the per-tick limit): count it.
				errs.addKey("error event " + codes.Code(e.Error.Code).String())
			}
		}
	})
	g.Go(func() error {
		select {
		case <-gotJoined:
		case <-ctx.Done():
			return ctx.Err()
		}
		joined <- struct{}{}
		select {
		case <-startC:
		case <-ctx.Done():
			return ctx.Err()
		}
		wctx, wcancel := context.WithDeadline(ctx, time.Unix(0, measureEnd.Load()))
		defer wcancel()
		pc := newPacer(p.Rate, i, p.Clients)
		var seq uint64
		for pc.wait(wctx) {
			seq++
			dx := 1.0 // walk back and forth: stays on the map
			if seq%2 == 0 {
				dx = -1
			}
			err := stream.Send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Input{Input: &gamev1.Input{
				Match: match, Seq: seq, Action: gamev1.Action_ACTION_MOVE, Dx: dx, ClientSentUnixNanos: time.Now().UnixNano()}}})
			if err != nil {
				return err
			}
			sent.Add(1)
		}
		return stream.CloseSend()
	})
	return g.Wait()
}
