package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Workload names.
const (
	ChatFanout  = "chat-fanout"
	ChatEcho    = "chat-echo"
	CollabTrace = "collab-trace"
	GameTicks   = "game-ticks"
	ConnRamp    = "conn-ramp"
)

// Workloads lists the workload names with a one-line summary each.
var Workloads = []struct{ Name, Summary string }{
	{ChatFanout, "members in rooms, each sending at --rate; deliveries/s and send-to-delivery latency"},
	{ChatEcho, "each client alone in its room, sending at --rate; messages/s and send-to-own-delivery latency"},
	{CollabTrace, "replays an editing trace (--trace) through gRPC; the final text must equal the trace's endContent"},
	{GameTicks, "players in matches sending inputs at --rate; tick updates/s and tick-to-delivery latency"},
	{ConnRamp, "opens chat streams in steps until errors or --cap; streams held and server memory per stream"},
}

// Params configure a workload run. Zero fields take the workload's default
// (Defaults).
type Params struct {
	// Target is the server's gRPC address; "" starts the reference server
	// in-process.
	Target string
	// AdminURL is the target's admin HTTP base URL, for its RSS
	// (process_resident_memory_bytes on /metrics); "" = unknown.
	AdminURL string
	// Duration is the measured interval.
	Duration time.Duration
	// Clients is members (chat), players (game) or the stream cap
	// (conn-ramp); Scopes is rooms or matches.
	Clients, Scopes int
	// Rate is each client's send rate per second (open-loop pacing; a
	// sender that falls behind skips slots). 0 = the workload's default.
	Rate float64
	// BodyBytes is the chat message body size.
	BodyBytes int
	// Trace is the editing trace file (collab-trace).
	Trace string
	// Window is how many collab operations are in flight at once.
	Window int
	// Step and StepEvery pace conn-ramp.
	Step      int
	StepEvery time.Duration
	// StreamsPerConn is how many streams share one TCP connection: conn-ramp
	// (default 100), chat-echo, chat-fanout and game-ticks (default 1, one
	// connection per client as a separate device would have).
	StreamsPerConn int
	// Engine drives chat workloads through the harness engine (the default
	// in cmd); false uses bench's own generated-stub loop.
	Engine bool
	// Baseline adds a bare generated-stub loop on the same workload and
	// server as the reference point (Result.Vs).
	Baseline bool
	// Spawn runs conn-ramp's server as a `bidikit serve` subprocess
	// (harness/spawn) with this binary, so its RSS is its own.
	Spawn string
	// Hold is how long conn-ramp holds its streams after the ramp before it
	// reads the server's memory (time for a heap or goroutine profile).
	Hold time.Duration
	// Vs "plain" makes conn-ramp (with Spawn) alternate Rounds rounds of
	// the reference and of the plain grpc-go comparator (bench/plainserver),
	// each server in its own process, and report both per-member figures
	// and their ratio.
	Vs     string
	Rounds int
	// Log receives harness-side logs (nil = discard).
	Log *slog.Logger
}

// Defaults returns p with zero fields set to the workload's defaults.
func Defaults(workload string, p Params) Params {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if p.Duration <= 0 {
		p.Duration = 10 * time.Second
	}
	def(&p.BodyBytes, 64)
	def(&p.Window, 64)
	switch workload {
	case ChatFanout, ChatEcho, GameTicks:
		def(&p.StreamsPerConn, 1)
	}
	switch workload {
	case ChatFanout:
		def(&p.Clients, 1000)
		def(&p.Scopes, 10)
		if p.Rate <= 0 {
			p.Rate = 1
		}
	case ChatEcho:
		def(&p.Clients, 100)
		p.Scopes = p.Clients
		if p.Rate <= 0 {
			p.Rate = 1000
		}
	case GameTicks:
		def(&p.Clients, 5000)
		def(&p.Scopes, 50)
		if p.Rate <= 0 {
			p.Rate = 10
		}
	case ConnRamp:
		def(&p.Clients, 10000)
		def(&p.Step, 500)
		def(&p.StreamsPerConn, 100)
		if p.StepEvery <= 0 {
			p.StepEvery = 250 * time.Millisecond
		}
	}
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
	return p
}

// Check reports parameters that cannot work, naming the flag.
func Check(workload string, p Params) error {
	known := false
	for _, w := range Workloads {
		known = known || w.Name == workload
	}
	switch {
	case !known:
		return fmt.Errorf("unknown workload %q (known: %s)", workload, workloadNames())
	case workload == CollabTrace && p.Trace == "":
		return errors.New("collab-trace needs --trace PATH (an editing trace, .json or .json.gz)")
	case p.Clients < 0:
		return fmt.Errorf("--clients is %d, want >= 1", p.Clients)
	case p.Scopes < 0:
		return fmt.Errorf("--scopes is %d, want >= 1", p.Scopes)
	case p.Rate < 0:
		return fmt.Errorf("--rate is %v, want > 0", p.Rate)
	case p.Duration < 0:
		return fmt.Errorf("--duration is %v, want > 0", p.Duration)
	case p.StreamsPerConn < 0:
		return fmt.Errorf("--streams-per-conn is %d, want >= 1", p.StreamsPerConn)
	case p.StreamsPerConn > 0 && workload == CollabTrace:
		return errors.New("--streams-per-conn: collab-trace runs one stream; the flag is for chat-echo, chat-fanout, game-ticks and conn-ramp")
	case p.Hold < 0:
		return fmt.Errorf("--hold is %v, want >= 0", p.Hold)
	case p.Vs != "" && (workload != ConnRamp || p.Vs != VsPlain):
		return fmt.Errorf("--vs %q: conn-ramp takes --vs %s (the plain grpc-go comparator); other workloads take --baseline", p.Vs, VsPlain)
	case p.Rounds < 0:
		return fmt.Errorf("--rounds is %d, want >= 1", p.Rounds)
	case workload == GameTicks && p.Scopes > 0 && p.Clients > 0 && p.Scopes > p.Clients:
		return fmt.Errorf("--scopes %d is more than --clients %d: every match needs a player", p.Scopes, p.Clients)
	}
	return nil
}

func workloadNames() string {
	var s []string
	for _, w := range Workloads {
		s = append(s, w.Name)
	}
	sort.Strings(s)
	return fmt.Sprint(s)
}

// Run runs one workload and returns its result. It starts the reference
// server in-process when p.Target is empty (and stops it before returning).
// An error means the workload could not run, or (collab-trace) that its
// verdict failed: then the error is a *TraceMismatchError and the returned
// Result is complete.
func Run(ctx context.Context, workload string, p Params) (Result, error) {
	if err := Check(workload, p); err != nil {
		return Result{}, err
	}
	p = Defaults(workload, p)
	target, admin := p.Target, p.AdminURL
	inProcess := target == "" && !(workload == ConnRamp && p.Spawn != "")
	if inProcess {
		srv, err := StartServer(ctx, p.Clients/max(p.Scopes, 1)+1, p.Log)
		if err != nil {
			return Result{}, err
		}
		defer srv.Stop()
		target, admin = srv.Addr(), srv.AdminURL()
	}
	var (
		res Result
		err error
	)
	switch workload {
	case ChatFanout, ChatEcho:
		res, err = runChat(ctx, workload, target, admin, p)
	case CollabTrace:
		res, err = runCollabTrace(ctx, target, p)
	case GameTicks:
		res, err = runGame(ctx, target, p)
	case ConnRamp:
		res, err = runRamp(ctx, target, admin, p)
	}
	res.Workload = workload
	if p.Target != "" {
		res.Target = p.Target
	} else if res.Target == "" {
		res.Target = "in-process"
	}
	if inProcess {
		res.ServerRSSBytes = ProcessMemory()
		res.Notes = append(res.Notes, "in-process: server_rss_bytes is the Go runtime memory of the whole process (server and load generator)")
	} else if admin != "" && res.ServerRSSBytes == 0 {
		if rss, rerr := ScrapeRSS(ctx, admin); rerr == nil {
			res.ServerRSSBytes = rss
		}
	}
	if !inProcess {
		res.HarnessRSSBytes = ProcessMemory()
	}
	res.Finish()
	return res, err
}

// runChat runs chat-echo or chat-fanout through the engine or the own loop,
// then the baseline loop when asked.
func runChat(ctx context.Context, workload, target, admin string, p Params) (Result, error) {
	var (
		res Result
		err error
	)
	if p.Engine {
		res, err = chatEngine(ctx, workload, target, admin, p)
	} else {
		res, err = chatLoop(ctx, workload, target, p)
		res.Tool = "bidikit-loop"
	}
	if err != nil {
		return res, err
	}
	if p.Baseline {
		base, err := chatLoop(ctx, workload, target, p)
		if err != nil {
			return res, fmt.Errorf("baseline loop: %w", err)
		}
		base.Tool = "baseline"
		base.Finish()
		res.Finish()
		res.SetVs(base)
	}
	return res, nil
}

func chatParams(workload string, p Params) map[string]string {
	return map[string]string{
		"clients": strconv.Itoa(p.Clients), "rooms": strconv.Itoa(p.Scopes),
		"rate_per_client": strconv.FormatFloat(p.Rate, 'g', -1, 64),
		"body_bytes":      strconv.Itoa(p.BodyBytes), "duration": p.Duration.String(),
		"streams_per_conn": strconv.Itoa(p.StreamsPerConn),
	}
}

// runID makes scope names unique per run, so runs on one server (rounds,
// baseline) never share rooms, documents or matches.
func runID() string { return strconv.FormatInt(time.Now().UnixNano()%1e9, 36) }

// dial opens one plaintext connection to addr (bench workloads speak to
// loopback or trusted test targets; the generic driver has TLS flags).
func dial(addr string) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cc, nil
}

// connPool hands clients their connections: client i uses connection
// i/perConn, dialled by the first client that asks for it. Every client
// goroutine may call get; the pool owns the connections until Close.
type connPool struct {
	target  string
	perConn int
	mu      sync.Mutex
	conns   map[int]*grpc.ClientConn
}

func newConnPool(target string, perConn int) *connPool {
	return &connPool{target: target, perConn: max(perConn, 1), conns: map[int]*grpc.ClientConn{}}
}

// get returns client i's connection.
func (cp *connPool) get(i int) (*grpc.ClientConn, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	k := i / cp.perConn
	if cc := cp.conns[k]; cc != nil {
		return cc, nil
	}
	cc, err := dial(cp.target)
	if err != nil {
		return nil, err
	}
	cp.conns[k] = cc
	return cc, nil
}

// Close closes every connection, once the clients are done.
func (cp *connPool) Close() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for k, cc := range cp.conns {
		_ = cc.Close()
		delete(cp.conns, k)
	}
}

// withToken returns ctx carrying "authorization: Bearer user" (dev auth
// accepts any token as the user id).
func withToken(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+user)
}

// ShardedHist is a latency histogram that many goroutines record into:
// shard i%len is guarded by its own mutex, so recorders rarely contend.
type ShardedHist struct {
	shards [16]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
}

func NewShardedHist() *ShardedHist {
	s := &ShardedHist{}
	for i := range s.shards {
		s.shards[i].h = NewHistogram()
	}
	return s
}

// record adds d (clamped to the histogram's range) to shard i.
func (s *ShardedHist) Record(i int, d time.Duration) {
	sh := &s.shards[i%len(s.shards)]
	us := max(d.Microseconds(), 1)
	sh.mu.Lock()
	_ = sh.h.RecordValue(min(us, sh.h.HighestTrackableValue()))
	sh.mu.Unlock()
}

// merged returns all shards merged into one histogram.
func (s *ShardedHist) Merged() *hdrhistogram.Histogram {
	h := NewHistogram()
	for i := range s.shards {
		s.shards[i].mu.Lock()
		h.Merge(s.shards[i].h)
		s.shards[i].mu.Unlock()
	}
	return h
}

// pacer schedules open-loop sends: slot k is due at start + k*interval; a
// sender that falls behind skips the missed slots (counted) instead of
// bursting. Owned by one send loop.
type pacer struct {
	start    time.Time
	interval time.Duration
	next     int64
	skipped  int64
}

// newPacer returns the pacer of client i of n: the n clients' phases are
// spread evenly over one interval, so that they never send in lockstep
// (lockstep turns a steady rate into bursts that measure queueing, not the
// server).
func newPacer(rate float64, i, n int) *pacer {
	iv := time.Duration(float64(time.Second) / rate)
	offset := time.Duration(float64(iv) * float64(i) / float64(max(n, 1)))
	return &pacer{start: time.Now().Add(offset), interval: iv}
}

// wait blocks until the next slot or ctx is done; it reports false when ctx
// is done.
func (p *pacer) wait(ctx context.Context) bool {
	due := p.start.Add(time.Duration(p.next) * p.interval)
	now := time.Now()
	if d := due.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	} else if behind := int64(-d / p.interval); behind > 0 {
		p.skipped += behind
		p.next += behind
	}
	p.next++
	return ctx.Err() == nil
}

// awaitJoined waits until n clients have signalled on joined (or failed
// before joining), bounded by 30 s plus 1 ms per client. On timeout it
// cancels the run and waits for the clients (wg) before returning an error
// naming what (e.g. "chat loop") and how many joined; on ctx's end likewise.
func awaitJoined(ctx context.Context, joined <-chan struct{}, n int, what, noun string, cancel context.CancelFunc, wg *sync.WaitGroup) error {
	deadline := time.NewTimer(30*time.Second + time.Duration(n)*time.Millisecond)
	defer deadline.Stop()
	for i := 0; i < n; i++ {
		select {
		case <-joined:
		case <-deadline.C:
			cancel()
			wg.Wait()
			return fmt.Errorf("%s: only %d of %d %s joined within the setup bound", what, i, n, noun)
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
	}
	return nil
}
