// Package game is the reference GameService (proto bidikit.game.v1): matches
// with one authoritative loop goroutine each, running at a fixed tick rate.
//
// Ownership: a match's loop goroutine is the only writer of the match state
// (players, positions, tick). A stream runs on a streamhost.Host: its receive
// loop handles joins, leaves, and inputs put into the player's bounded
// inbox, never blocking; its writer (the gRPC handler goroutine) is the only
// consumer of the stream's outbound queue.
// Streams hand membership changes to a loop through its request channel and
// inputs through the inbox; the loop hands updates to streams through their
// queues, never blocking on a slow reader.
//
// Per tick each player gets a TickUpdate: the first one after Joined is full,
// then deltas built once per match and shared (encoded bytes) by every
// recipient. A reader more than Config.MaxQueuedTicks updates behind gets the
// newest state as one full update replacing the stale ones. Ticks are
// numbered per match, starting from 0 when a match is created; they increase
// for every player within a match (a player that moves to another match gets
// a Joined carrying that match's tick first).
//
// Choices where the contract leaves room: a JoinMatch while in a match is
// refused with an Error event FAILED_PRECONDITION (field "join.match"); leave
// first. A full match or the match limit is answered with an Error event
// RESOURCE_EXHAUSTED (field "join.match"), a match Config.Access refuses
// with an Error event PERMISSION_DENIED (same field), and the stream stays
// open. Error events for rejected inputs are best effort: at most one per
// player per tick and none while an earlier event is unsent; dropped_inputs
// counts them all.
//
// NewShared shares matches between server instances through a MatchHub
// (package gamehub: NATS): one instance owns each match and runs its loop;
// the others relay their players' joins and inputs to it and its updates to
// them (see shared.go). New serves matches of this instance only.
package game

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/bidikit/bidikit/reference/wire"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/streamhost"
	"github.com/bidikit/bidikit/reference/validate"
)

// ServiceName is the fully qualified gRPC service name.
const ServiceName = "bidikit.game.v1.GameService"

const metricLabel = "game"

var errShuttingDown = streamhost.ErrShuttingDown

func shutdownKick(match string) *gamev1.ServerEvent {
	return &gamev1.ServerEvent{Event: &gamev1.ServerEvent_Kick{Kick: &gamev1.Kick{
		Match: match, Reason: gamev1.Kick_REASON_SHUTDOWN, Message: "server shutting down",
	}}}
}

// Service is the game service. Create it with New; it implements
// service.Service. Its methods are safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	members     prometheus.Gauge
	delivered   prometheus.Counter
	limited     prometheus.Counter
	rejectedVec *prometheus.CounterVec
	// queueDepth is the items waiting in players' send queues, summed by
	// each match loop once per tick (see match.queued).
	queueDepth prometheus.Gauge

	stop  chan struct{}  // closed by Close: every match loop ends
	loops sync.WaitGroup // one per running match loop (and, shared, per lease renewer and relay watchdog)

	// hub is nil for New; NewShared's matches live in nodes instead of
	// matches (see shared.go).
	hub     MatchHub
	claimMu sync.Mutex     // serialises creating nodes (a lease claim each)
	bg      sync.WaitGroup // shared: background requests (resyncs)

	host  *streamhost.Host[item]
	flood streamhost.FloodPolicy // drops per player, counted by match loops

	mu      sync.Mutex // guards the fields below; never held while taking a session's mu
	matches map[string]*match
	nodes   map[string]*node
	closed  bool

	// hists hold tick computation times in nanoseconds, sharded by match so
	// that loops do not contend on one mutex.
	hists     [histShards]tickHist
	nextShard atomic.Uint32

	players  atomic.Int64
	resyncs  atomic.Uint64
	dropped  atomic.Uint64
	kicks    atomic.Uint64
	nextSess atomic.Uint64
}

// New returns a running Service (no match exists until a player joins).
func New(cfg Config, m *metrics.Set, log *slog.Logger) (*Service, error) {
	return newService(cfg, nil, m, log)
}

func newService(cfg Config, hub MatchHub, m *metrics.Set, log *slog.Logger) (*Service, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("game: metrics set is nil (use metrics.Discard() in tests)")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Service{
		cfg:         cfg,
		log:         log,
		members:     m.Members.WithLabelValues(metricLabel),
		delivered:   m.Delivered.WithLabelValues(metricLabel),
		limited:     m.RateLimited.WithLabelValues(metricLabel, "input"),
		rejectedVec: m.Rejected,
		queueDepth:  m.QueueDepth.WithLabelValues(metricLabel),
		host: streamhost.New[item](streamhost.Config{
			Service:    metricLabel,
			QueueItems: cfg.QueueMessages,
			QueueBytes: cfg.QueueBytes,
			Metrics: streamhost.Metrics{ // queue depth: summed by the match loops
				Streams:      m.ActiveStreams.WithLabelValues(metricLabel),
				Cuts:         m.SlowConsumerCuts.WithLabelValues(metricLabel),
				ShuttingDown: m.ShuttingDown,
			},
			Log: log,
		}),
		flood:   streamhost.FloodPolicy{Mode: streamhost.FloodLeaky, Limit: cfg.FloodKickAfter, Window: cfg.FloodWindow},
		stop:    make(chan struct{}),
		matches: map[string]*match{},
		nodes:   map[string]*node{},
		hub:     hub,
	}, nil
}

const histShards = 8

// tickHist is one shard of the tick computation histogram.
type tickHist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram // created on first use
}

func (t *tickHist) record(d time.Duration) {
	t.mu.Lock()
	if t.h == nil {
		t.h = hdrhistogram.New(1, int64(time.Minute), 3)
	}
	_ = t.h.RecordValue(int64(d)) // out of range only past a minute; dropped then
	t.mu.Unlock()
}

// Name implements service.Service.
func (s *Service) Name() string { return ServiceName }

// Register implements service.Service.
func (s *Service) Register(g *grpc.Server) {
	gamev1.RegisterGameServiceServer(g, handler{s: s})
}

type handler struct {
	gamev1.UnimplementedGameServiceServer
	s *Service
}

func (h handler) Play(stream gamev1.GameService_PlayServer) error { return h.s.play(stream) }

// Drain implements service.Service: every open stream is sent Kick
// REASON_SHUTDOWN after what is already queued for it and ends with
// UNAVAILABLE "server shutting down"; new streams are refused with the same
// status. It returns when all streams have ended or ctx is done.
func (s *Service) Drain(ctx context.Context) error { return s.host.Drain(ctx) }

// closeDrain bounds how long Close lets the streams still open write their
// shutdown kicks before it ends them.
const closeDrain = time.Second

// Close implements service.Service: it stops every match loop (players still
// in a match are sent Kick REASON_SHUTDOWN and their streams end with
// UNAVAILABLE), waits for the loops to end, then drains what streams are
// left (a second at most) and waits for their clean-up. Joins after Close
// are refused.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	s.loops.Wait()
	s.bg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), closeDrain)
	_ = s.host.Drain(ctx) // streams left after it are forced
	cancel()
	err := s.host.Close()
	s.mu.Lock()
	clear(s.matches)
	clear(s.nodes)
	s.mu.Unlock()
	return err
}

// TickStats summarises the time match loops spent computing ticks: applying
// inputs, building and encoding the delta (and full update when needed) and
// queueing every player's update; not the network writes, which each stream's
// writer does. Durations are HDR-histogram values (3 significant digits).
type TickStats struct {
	Count         int64
	P50, P99, Max time.Duration
}

// TickStats returns the tick computation time distribution since New or the
// last ResetTickStats.
func (s *Service) TickStats() TickStats {
	all := hdrhistogram.New(1, int64(time.Minute), 3)
	for i := range s.hists {
		t := &s.hists[i]
		t.mu.Lock()
		if t.h != nil {
			all.Merge(t.h)
		}
		t.mu.Unlock()
	}
	return TickStats{
		Count: all.TotalCount(),
		P50:   time.Duration(all.ValueAtQuantile(50)),
		P99:   time.Duration(all.ValueAtQuantile(99)),
		Max:   time.Duration(all.Max()),
	}
}

// ResetTickStats empties the tick histogram (e.g. after a benchmark's ramp).
func (s *Service) ResetTickStats() {
	for i := range s.hists {
		t := &s.hists[i]
		t.mu.Lock()
		if t.h != nil {
			t.h.Reset()
		}
		t.mu.Unlock()
	}
}

// Stats is a point-in-time summary of the service, for tests and benchmarks.
type Stats struct {
	Matches int    // running matches
	Streams int    // open Play streams
	Players int64  // memberships in matches
	Resyncs uint64 // stale tick updates replaced by a full one (slow readers), ever
	Dropped uint64 // inputs dropped (over the limit or invalid), ever
	Kicks   uint64 // players kicked for input flooding, ever
}

// Stats returns the current Stats.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	st := Stats{Matches: len(s.matches) + len(s.nodes)}
	s.mu.Unlock()
	st.Streams = s.host.Len()
	st.Players = s.players.Load()
	st.Resyncs = s.resyncs.Load()
	st.Dropped = s.dropped.Load()
	st.Kicks = s.kicks.Load()
	return st
}

func (s *Service) memberJoined() { s.players.Add(1); s.members.Inc() }
func (s *Service) memberLeft()   { s.players.Add(-1); s.members.Dec() }
func (s *Service) kicked()       { s.kicks.Add(1) }
func (s *Service) droppedInputs(n uint64) {
	if n > 0 {
		s.dropped.Add(n)
	}
}
func (s *Service) rateLimited(n uint64) { s.limited.Add(float64(n)) }
func (s *Service) rejected(field string) {
	s.rejectedVec.WithLabelValues(metricLabel, field).Inc()
}

// expire removes m from the service if it is still registered under its
// name. Called by m's loop just before it ends; joins that already hold m
// see m.done and retry with a new match.
func (s *Service) expire(m *match) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.matches[m.name] == m {
		delete(s.matches, m.name)
	}
}

// matchFor returns the running match called name, creating it (and starting
// its loop) when there is none and the limit allows.
func (s *Service) matchFor(name string) (*match, *gamev1.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.host.Draining() {
		return nil, &gamev1.Error{Code: uint32(codes.Unavailable), Message: "server shutting down", Field: "join.match", Match: name}
	}
	if m := s.matches[name]; m != nil {
		return m, nil
	}
	if len(s.matches) >= s.cfg.MaxMatches {
		return nil, &gamev1.Error{
			Code:    uint32(codes.ResourceExhausted),
			Message: fmt.Sprintf("cannot create match %q: the server hosts the maximum of %d matches", name, s.cfg.MaxMatches),
			Field:   "join.match",
			Match:   name,
		}
	}
	m := newMatch(s, name)
	s.matches[name] = m
	s.loops.Add(1)
	go m.run()
	s.log.Debug("game: match created", "match", name)
	return m, nil
}

// join asks the loop of match name to add a player for ss. It blocks until
// the loop answers (at most one tick's computation) or ctx is done.
func (s *Service) join(ctx context.Context, ss *session, name string) (*match, *player, *gamev1.Error) {
	for range 3 { // a match that expires under us is recreated; bounded
		m, e := s.matchFor(name)
		if e != nil {
			return nil, nil, e
		}
		r := request{kind: reqJoin, user: ss.user, out: ss.out, reply: make(chan reply, 1)}
		select {
		case m.reqs <- r:
			rep := <-r.reply
			if rep.err != nil {
				return nil, nil, rep.err
			}
			return m, rep.p, nil
		case <-m.done:
			continue
		case <-ctx.Done():
			return nil, nil, &gamev1.Error{Code: uint32(codes.Canceled), Message: "stream ended", Field: "join.match", Match: name}
		}
	}
	return nil, nil, &gamev1.Error{Code: uint32(codes.Unavailable), Message: fmt.Sprintf("match %q keeps closing; try again", name), Field: "join.match", Match: name}
}

// leave takes p out of m; it blocks until m's loop has done so or has ended.
func leave(m *match, p *player, notify bool) {
	r := request{kind: reqLeave, p: p, out: p.out, notify: notify, reply: make(chan reply, 1)}
	select {
	case m.reqs <- r:
		<-r.reply
	case <-m.done:
	}
}

// session is the game side of one Play stream (a streamhost.Handler).
type session struct {
	s      *Service
	st     *streamhost.Stream[item]
	stream gamev1.GameService_PlayServer
	user   string
	out    *outbox
	errs   *rate.Limiter // bounds Error events answering client events (not inputs in a match)
	buf    []byte        // the writer's encoding buffer
	raw    *emptypb.Empty

	mu     sync.Mutex // guards cur, closed; held by the reader across a join or leave
	cur    *membership
	closed bool // set by the stream's clean-up: no more joins
}

// membership is a session's place in a match: m for a match of New, n for
// a shared match's node on this instance (which may change from relaying to
// owning under it; p stays the same player).
type membership struct {
	name string
	m    *match
	n    *node
	p    *player
}

// leave takes the membership's player out of its match.
func (c *membership) leave(notify bool) {
	if c.n != nil {
		c.n.leave(c.p, notify)
		return
	}
	leave(c.m, c.p, notify)
}

func (ss *session) matchName() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.cur != nil {
		return ss.cur.name
	}
	return ""
}

func (s *Service) newSession(st *streamhost.Stream[item], stream gamev1.GameService_PlayServer) *session {
	return &session{
		s:      s,
		st:     st,
		stream: stream,
		user:   st.User(),
		out:    newOutboxOn(st.Queue(), s.cfg.MaxQueuedTicks, func() { s.resyncs.Add(1) }),
		errs:   rate.NewLimiter(rate.Limit(s.cfg.TickRate), s.cfg.TickRate),
		raw:    &emptypb.Empty{}, // carries a pre-encoded ServerEvent as unknown fields
	}
}

// finish leaves the session's match and closes its queue; the writer then
// sends what is queued and ends. Safe to call more than once.
func (ss *session) finish() {
	ss.mu.Lock()
	ss.closed = true
	if c := ss.cur; c != nil {
		ss.cur = nil
		c.leave(false)
	}
	ss.mu.Unlock()
	ss.st.Close(nil)
}

// Close implements streamhost.Handler: the stream's player leaves its
// match.
func (ss *session) Close() { ss.finish() }

// Drain implements streamhost.Handler: the stream is sent Kick
// REASON_SHUTDOWN after what is already queued and ends with UNAVAILABLE.
func (ss *session) Drain() { ss.out.pushEvent(shutdownKick(ss.matchName()), errShuttingDown) }

// play serves one Play stream on the host.
func (s *Service) play(stream gamev1.GameService_PlayServer) error {
	return s.host.Serve(stream, func(st *streamhost.Stream[item]) (streamhost.Handler[item], error) {
		return s.newSession(st, stream), nil
	})
}

// Write is the stream's only sender (streamhost.Handler): events as they
// are, tick updates as the shared frame plus the personal fields. An event
// that ends the stream ends the batch with its status.
func (ss *session) Write(_ context.Context, batch []item) error {
	ss.out.popped(batch)
	for i := range batch {
		it := &batch[i]
		if it.ev != nil {
			if err := ss.stream.Send(it.ev); err != nil {
				return err
			}
			ss.s.delivered.Inc()
			if it.end != nil {
				return it.end
			}
			continue
		}
		ss.buf = it.appendEncoded(ss.buf[:0])
		ss.raw.ProtoReflect().SetUnknown(ss.buf)
		if err := ss.stream.SendMsg(ss.raw); err != nil {
			return err
		}
		ss.s.delivered.Inc()
	}
	return nil
}

// Overflowed is the status of a stream cut as a slow consumer; it is sent
// Kick REASON_SLOW_CONSUMER first when that can be written.
func (ss *session) Overflowed() error {
	msg := fmt.Sprintf("send queue overflow: more than %d events (or %d bytes) waiting for a slow reader", ss.s.cfg.QueueMessages, ss.s.cfg.QueueBytes)
	_ = ss.stream.Send(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Kick{Kick: &gamev1.Kick{
		Match: ss.matchName(), Reason: gamev1.Kick_REASON_SLOW_CONSUMER, Message: msg,
	}}})
	return status.Error(codes.ResourceExhausted, msg)
}

// Receive decodes one client event and handles it; it never blocks on the
// match beyond a join's answer: inputs go into the player's bounded inbox.
// Undecodable bytes end the stream with INVALID_ARGUMENT.
func (ss *session) Receive(f *wire.Frame) error {
	ev := &gamev1.ClientEvent{}
	if err := wire.Decode(f, ev); err != nil {
		return err
	}
	switch e := ev.GetEvent().(type) {
	case *gamev1.ClientEvent_Input:
		ss.input(e.Input)
	case *gamev1.ClientEvent_Join:
		ss.joinMatch(ss.st.Context(), e.Join)
	case *gamev1.ClientEvent_Leave:
		ss.leaveMatch(e.Leave)
	default:
		ss.reply(&gamev1.Error{Code: uint32(codes.InvalidArgument), Message: "ClientEvent has no event set (want join, input or leave)", Field: "event"})
	}
	return nil
}

// reply queues an Error event answering a client event, rate limited per
// stream (extra ones are dropped silently).
func (ss *session) reply(e *gamev1.Error) {
	if ss.errs.Allow() {
		ss.out.pushEvent(&gamev1.ServerEvent{Event: &gamev1.ServerEvent_Error{Error: e}}, nil)
	}
}

func (ss *session) input(in *gamev1.Input) {
	ss.mu.Lock()
	c := ss.cur
	ss.mu.Unlock()
	if c == nil {
		ss.reply(&gamev1.Error{Code: uint32(codes.FailedPrecondition), Message: "input outside a match: send JoinMatch first", Field: "input.match", Match: in.GetMatch(), Seq: in.GetSeq()})
		return
	}
	if in.GetMatch() != "" && in.GetMatch() != c.name {
		ss.reply(&gamev1.Error{Code: uint32(codes.FailedPrecondition), Message: fmt.Sprintf("input for match %q but this stream is in match %q", in.GetMatch(), c.name), Field: "input.match", Match: in.GetMatch(), Seq: in.GetSeq()})
		return
	}
	c.p.in.put(inputRec{seq: in.GetSeq(), action: in.GetAction(), dx: in.GetDx(), dy: in.GetDy(), sent: in.GetClientSentUnixNanos()})
}

func (ss *session) joinMatch(ctx context.Context, j *gamev1.JoinMatch) {
	name := j.GetMatch()
	if err := validate.Name("join.match", name); err != nil {
		ss.reply(&gamev1.Error{Code: uint32(codes.InvalidArgument), Message: err.Error(), Field: "join.match", Match: name})
		return
	}
	if a := ss.s.cfg.Access; a != nil && !a.Allowed(name, ss.user) {
		ss.s.rejected("join.match")
		ss.reply(&gamev1.Error{Code: uint32(codes.PermissionDenied), Message: fmt.Sprintf("user %q may not join match %q", ss.user, name), Field: "join.match", Match: name})
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return
	}
	if ss.cur != nil {
		ss.reply(&gamev1.Error{Code: uint32(codes.FailedPrecondition), Message: fmt.Sprintf("already in match %q: send LeaveMatch first (one match per stream)", ss.cur.name), Field: "join.match", Match: name})
		return
	}
	if ss.s.hub != nil {
		c, e := ss.s.joinShared(ctx, ss, name)
		if e != nil {
			ss.reply(e)
			return
		}
		ss.cur = c
		return
	}
	m, p, e := ss.s.join(ctx, ss, name)
	if e != nil {
		ss.reply(e)
		return
	}
	ss.cur = &membership{name: name, m: m, p: p}
}

func (ss *session) leaveMatch(l *gamev1.LeaveMatch) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	c := ss.cur
	if c == nil || l.GetMatch() != c.name {
		ss.reply(&gamev1.Error{Code: uint32(codes.FailedPrecondition), Message: fmt.Sprintf("not in match %q", l.GetMatch()), Field: "leave.match", Match: l.GetMatch()})
		return
	}
	ss.cur = nil
	c.leave(true)
}
