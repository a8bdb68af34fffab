package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/chatclient"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// chatEngine runs the chat workload as a programmatic scenario through the
// harness engine: one chatter role, one room each (echo) or Clients spread
// round-robin over Scopes rooms (fan-out), no checks, no faults.
func chatEngine(ctx context.Context, workload, target, admin string, p Params) (Result, error) {
	rooms := p.Scopes
	s := &scenario.Scenario{
		File: "bench:" + workload, Name: workload, Service: scenario.Chat, Seed: 1,
		Duration: p.Duration,
		Roles: []scenario.Role{{
			Name: "bench", Count: p.Clients, Behaviour: "chatter", Rate: p.Rate, Scopes: rooms,
			ScopePrefix: "bench-" + runID(),
			Params:      &engine.ChatterParams{BodyBytes: p.BodyBytes, RoomsPerClient: 1},
		}},
		StreamsPerConn: max(p.StreamsPerConn, 1),
	}
	opts := []engine.Option{engine.WithTarget(target), engine.WithLogger(p.Log)}
	if admin != "" {
		opts = append(opts, engine.WithServerEnv(admin))
	}
	r, err := engine.Run(ctx, s, opts...)
	res := Result{Tool: "bidikit-engine", Params: chatParams(workload, p), DurationS: p.Duration.Seconds(),
		Messages: r.Messages.Sent, Deliveries: r.Messages.Delivered, LatencyOf: "send-to-delivery",
		LatencyMS: r.LatencyMS}
	if len(r.Errors) > 0 {
		res.Errors = map[string]int64{}
		for k, v := range r.Errors {
			res.Errors[k] = int64(v)
		}
	}
	if err != nil {
		return res, fmt.Errorf("engine: %w", err)
	}
	return res, nil
}

// chatLoop is the bare generated-stub client loop for the chat workloads:
// one Connect stream per client (p.StreamsPerConn of them per connection),
// joined to its room;
// once every client has joined, each sends at p.Rate for p.Duration while
// its receive loop counts deliveries and records send-to-delivery latency.
// Then each half-closes and reads to io.EOF.
func chatLoop(ctx context.Context, workload, target string, p Params) (Result, error) {
	prefix := "bench-" + runID()
	hist := NewShardedHist()
	var sent, delivered atomic.Int64
	errs := newErrCount()
	body := strings.Repeat("x", p.BodyBytes)

	joined := make(chan struct{}, p.Clients)
	startC := make(chan struct{})
	var measureEnd atomic.Int64 // unix nanos; deliveries after it are not counted
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := newConnPool(target, p.StreamsPerConn)
	defer conns.Close()

	var wg sync.WaitGroup
	for i := 0; i < p.Clients; i++ {
		wg.Go(func() {
			user := "bench-" + strconv.Itoa(i)
			room := prefix + "-" + strconv.Itoa(i%max(p.Scopes, 1))
			err := chatClient(runCtx, conns, user, room, body, p, i, joined, startC, &measureEnd, hist, &sent, &delivered)
			if err != nil {
				errs.add(err)
				select { // a client that failed before joining must not hold the start
				case joined <- struct{}{}:
				default:
				}
			}
		})
	}
	if err := awaitJoined(ctx, joined, p.Clients, "chat loop", "clients", cancel, &wg); err != nil {
		return Result{}, err
	}
	measureEnd.Store(time.Now().Add(p.Duration).UnixNano())
	began := time.Now()
	close(startC)
	wg.Wait()
	elapsed := min(time.Since(began), p.Duration)
	res := Result{Params: chatParams(workload, p), DurationS: elapsed.Seconds(), Messages: sent.Load(),
		Deliveries: delivered.Load(), LatencyMS: Summarize(hist.Merged()), LatencyOf: "send-to-delivery",
		Errors: errs.snapshot()}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if sent.Load() == 0 {
		return res, fmt.Errorf("chat loop: no message was sent (errors: %v)", res.Errors)
	}
	return res, nil
}

// chatClient is one bare chat client. Its send loop and receive loop own
// their own errors, joined by errgroup.
func chatClient(ctx context.Context, conns *connPool, user, room, body string, p Params, i int,
	joined chan<- struct{}, startC <-chan struct{}, measureEnd *atomic.Int64,
	hist *ShardedHist, sent, delivered *atomic.Int64) error {
	cc, err := conns.get(i)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := chatclient.Connect(sctx, cc, user)
	if err != nil {
		return err
	}
	if err := stream.Send(chatclient.Join(room, nil)); err != nil {
		return err
	}
	gotJoined := make(chan struct{})
	g := new(errgroup.Group)
	g.Go(func() error { // receive loop
		h := &benchRecv{i: i, gotJoined: gotJoined, measureEnd: measureEnd, hist: hist, delivered: delivered}
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
			chatclient.Dispatch(ev, h)
			if h.err != nil {
				return h.err
			}
		}
	})
	g.Go(func() error { // send loop
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
		end := time.Unix(0, measureEnd.Load())
		wctx, wcancel := context.WithDeadline(ctx, end)
		defer wcancel()
		pc := newPacer(p.Rate, i, p.Clients)
		var seq uint64
		var buf chatclient.SendBuf
		for pc.wait(wctx) {
			seq++
			err := stream.Send(buf.Fill(room, chatclient.MsgID(user, seq), seq, body, time.Now().UnixNano()))
			if err != nil {
				return err
			}
			sent.Add(1)
		}
		// Let the last deliveries arrive, then end the interop way.
		drain := time.NewTimer(250 * time.Millisecond)
		defer drain.Stop()
		select {
		case <-drain.C:
		case <-ctx.Done():
		}
		return stream.CloseSend()
	})
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cancel()
		return <-done
	case <-time.After(p.Duration + 60*time.Second):
		cancel()
		<-done
		return errors.New("chat client: stream did not end within the drain bound")
	}
}

// benchRecv is a bare chat client's receive loop's view of the server's
// events: the first Joined releases the send loop, each message delivered
// before measureEnd is counted with its latency, an Error event ends the
// client (err). Owned by the receive loop.
type benchRecv struct {
	chatclient.Ignore
	i          int
	gotJoined  chan struct{}
	joined     bool
	measureEnd *atomic.Int64
	hist       *ShardedHist
	delivered  *atomic.Int64
	err        error
}

func (h *benchRecv) Joined(*chatv1.Joined) {
	if !h.joined {
		h.joined = true
		close(h.gotJoined)
	}
}

func (h *benchRecv) Deliver(m *chatv1.Message, at time.Time) {
	end := h.measureEnd.Load()
	if end == 0 || at.UnixNano() > end {
		return
	}
	h.delivered.Add(1)
	if d, ok := chatclient.Latency(m, at); ok {
		h.hist.Record(h.i, d)
	}
}

func (h *benchRecv) Error(e *chatv1.Error) {
	h.err = fmt.Errorf("server error event %s: %s", codes.Code(e.Code), e.Message)
}

// errCount counts errors by status code name; safe for concurrent use.
type errCount struct {
	mu sync.Mutex
	m  map[string]int64
}

func newErrCount() *errCount { return &errCount{m: map[string]int64{}} }

func (e *errCount) add(err error) {
	key := status.Code(err).String()
	if _, ok := status.FromError(err); !ok {
		key = err.Error() // a kick or error event: keep what it said, bounded
		if len(key) > 60 {
			key = key[:60]
		}
	}
	e.mu.Lock()
	e.m[key]++
	e.mu.Unlock()
}

func (e *errCount) addKey(key string) {
	e.mu.Lock()
	e.m[key]++
	e.mu.Unlock()
}

func (e *errCount) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}
