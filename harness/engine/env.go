package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	channelzpb "google.golang.org/grpc/channelz/grpc_channelz_v1"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
)

// env is what checkers may consult besides events (check.Env): the admin
// URL and one connection of its own to each target (no failover: each
// asks exactly its instance) for health and channelz, never through the
// fault proxy. live, set by preflight before any checker runs and read-only
// after, marks the targets that answered; health and channelz cover those.
type env struct {
	opts  *options
	conns []*conn // conns[i] reaches opts.targets[i] only
	live  []bool
	// rtt, set by preflight, is the slowest health answer among the live
	// targets (connection set-up included): the yardstick for how long the
	// service probe waits for a refusal (see probeService).
	rtt time.Duration
}

var (
	_ check.Env        = (*env)(nil)
	_ check.TargetsEnv = (*env)(nil)
)

func newEnv(ctx context.Context, o *options) (*env, error) {
	e := &env{opts: o, live: make([]bool, len(o.targets))}
	for _, t := range o.targets {
		c, err := dial([]string{t}, o)
		if err != nil {
			e.close()
			return nil, err
		}
		e.conns = append(e.conns, c)
	}
	return e, nil
}

func (e *env) close() {
	for _, c := range e.conns {
		_ = c.cc.Close()
	}
}

// AdminURL implements check.Env.
func (e *env) AdminURL() string { return e.opts.adminURL }

// DownReporter is implemented by a fault.Server (WithFaultEnv) that takes
// targets down on purpose, e.g. a "kill-server" fault killing one instance
// of a cluster: Down lists those it killed and did not restart, by the
// address clients dial (as in WithTargets). Health after the run is judged
// over the other targets, so an instance the run killed does not fail the
// checks that ask (status-codes, fairness), while one that died otherwise
// still does.
type DownReporter interface {
	Down() []string
}

// Healthy implements check.Env: the overall gRPC health of every target
// that answered preflight, except those the run's own server faults took
// down (DownReporter). One other instance NOT_SERVING or gone makes the
// cluster unhealthy: a dead instance after an attack is what the checks
// asking this are for. When the run killed every target, nothing is left
// to ask: an error says so.
func (e *env) Healthy(ctx context.Context) (bool, error) {
	var killed []string
	asked := 0
	for _, h := range e.TargetsHealth(ctx) {
		switch {
		case h.Killed:
			killed = append(killed, h.Target)
		case !h.Asked:
		case h.Err == nil:
			asked++
		case errors.Is(h.Err, errNotServing):
			return false, nil
		case len(e.conns) > 1:
			return false, fmt.Errorf("target %s: %w", h.Target, h.Err)
		default:
			return false, h.Err
		}
	}
	if asked == 0 && len(killed) > 0 {
		return false, fmt.Errorf("no target left to ask: the run killed %s", strings.Join(killed, ", "))
	}
	return true, nil
}

// errNotServing is a TargetHealth error: the target answered, but not
// SERVING.
var errNotServing = errors.New("health: not serving")

// TargetsHealth implements check.TargetsEnv: each target's gRPC health, in
// target order, asked in parallel (within the dial timeout). Targets that
// did not answer preflight are not asked; those the run's own server faults
// took down (DownReporter) are marked Killed and not asked. A target
// without the health service (UNIMPLEMENTED) answered: it counts as serving.
func (e *env) TargetsHealth(ctx context.Context) []check.TargetHealth {
	ctx, cancel := context.WithTimeout(ctx, e.opts.dialTimeout)
	defer cancel()
	down := map[string]bool{}
	if dr, ok := e.opts.faultServer.(DownReporter); ok {
		for _, t := range dr.Down() {
			down[t] = true
		}
	}
	out := make([]check.TargetHealth, len(e.conns))
	var wg sync.WaitGroup
	for i, c := range e.conns {
		h := &out[i]
		h.Target, h.Position = e.opts.targets[i], i+1
		switch {
		case down[h.Target]:
			h.Killed = true
			continue
		case !e.live[i]:
			continue
		}
		h.Asked = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := healthpb.NewHealthClient(c.cc).Check(ctx, &healthpb.HealthCheckRequest{})
			switch {
			case status.Code(err) == codes.Unimplemented:
				// No health service (many third-party servers: service
				// custom): it answered, so it serves, as preflight holds.
			case err != nil:
				h.Err = err
			case resp.Status != healthpb.HealthCheckResponse_SERVING:
				h.Err = fmt.Errorf("%w (%s)", errNotServing, resp.Status)
			}
		}()
	}
	wg.Wait()
	return out
}

// ErrUnreachable is wrapped by Run's error when no target answers gRPC
// within the dial timeout; no later scenario can do better.
var ErrUnreachable = errors.New("target unreachable")

// preflightGrace is how long preflight still waits for the other targets
// once one has answered.
const preflightGrace = time.Second

// preflight fails within the dial timeout when no target answers gRPC at
// all: a health check per target, in parallel, retried while the
// connection is refused. Any answer (even UNIMPLEMENTED: no health
// service) proves a gRPC server. Once one target has answered, the others
// get preflightGrace more; those that stay silent are logged by name and
// left out of Healthy and Channelz (clients still try them in turn). Run
// then probes the scenario's service on the live targets (probeService,
// preflight.go).
func (e *env) preflight(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.opts.dialTimeout)
	defer cancel()
	type answer struct {
		i   int
		rtt time.Duration
		err error // nil: answered
	}
	answers := make(chan answer, len(e.conns))
	for i, c := range e.conns {
		go func() {
			rtt, err := probe(ctx, c, e.opts.dialTimeout)
			answers <- answer{i, rtt, err}
		}()
	}
	var grace <-chan time.Time
	errs := make([]error, len(e.conns))
	for range e.conns {
		var a answer
		select {
		case a = <-answers:
		case <-grace:
			cancel() // the silent ones now return ctx's error
			a = <-answers
		}
		errs[a.i] = a.err
		if a.err == nil {
			e.live[a.i] = true
			e.rtt = max(e.rtt, a.rtt)
			if grace == nil {
				t := time.NewTimer(preflightGrace)
				defer t.Stop()
				grace = t.C
			}
		}
	}
	var silent []string
	answered := false
	for i, err := range errs {
		if err == nil {
			answered = true
			continue
		}
		silent = append(silent, fmt.Sprintf("%s (%s)", e.opts.targets[i], err))
	}
	if answered {
		if len(silent) > 0 {
			e.opts.log.Warn("targets not answering gRPC; clients will fail over past them", "targets", strings.Join(silent, "; "))
		}
		return nil
	}
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return ctx.Err() // the caller's ctx ended, not the dial timeout
	}
	if len(e.conns) == 1 {
		return fmt.Errorf("%w: %s did not answer gRPC within %v: %s", ErrUnreachable, e.opts.targets[0], e.opts.dialTimeout, errs[0])
	}
	return fmt.Errorf("%w: none of the %d targets answered gRPC within %v: %s", ErrUnreachable, len(e.conns), e.opts.dialTimeout, strings.Join(silent, "; "))
}

// probe checks c's health until it answers or ctx ends; nil = answered,
// with how long the answering call took.
func probe(ctx context.Context, c *conn, limit time.Duration) (time.Duration, error) {
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, limit)
		t0 := time.Now()
		_, err := healthpb.NewHealthClient(c.cc).Check(cctx, &healthpb.HealthCheckRequest{})
		rtt := time.Since(t0)
		ccancel()
		switch status.Code(err) {
		case codes.OK, codes.Unimplemented, codes.NotFound, codes.Unauthenticated, codes.PermissionDenied:
			return rtt, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return 0, errors.New(status.Convert(last).Message())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Channelz implements check.Env: open sockets and streams over all the
// servers of every target that answered preflight, through the channelz
// service (ok=false when none serves it). A target that no longer answers
// (UNAVAILABLE: an instance that died) is skipped: what it held is gone.
// The count includes this env's own connection to each target.
func (e *env) Channelz(ctx context.Context) (sockets, streams int, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.dialTimeout)
	defer cancel()
	for i, c := range e.conns {
		if !e.live[i] {
			continue
		}
		so, st, served, err := channelz(ctx, c)
		if status.Code(err) == codes.Unavailable && len(e.conns) > 1 {
			continue
		}
		if err != nil {
			if len(e.conns) > 1 {
				return 0, 0, false, fmt.Errorf("target %s: %w", e.opts.targets[i], err)
			}
			return 0, 0, false, err
		}
		if served {
			sockets, streams, ok = sockets+so, streams+st, true
		}
	}
	return sockets, streams, ok, nil
}

// channelz counts one target's open sockets and streams.
func channelz(ctx context.Context, c *conn) (sockets, streams int, ok bool, err error) {
	cz := channelzpb.NewChannelzClient(c.cc)
	srvs, err := cz.GetServers(ctx, &channelzpb.GetServersRequest{})
	if status.Code(err) == codes.Unimplemented {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("channelz GetServers: %w", err)
	}
	for _, sv := range srvs.Server {
		var start int64
		for page := 0; page < 1000; page++ {
			resp, err := cz.GetServerSockets(ctx, &channelzpb.GetServerSocketsRequest{
				ServerId: sv.GetRef().GetServerId(), StartSocketId: start, MaxResults: 500})
			if err != nil {
				return 0, 0, false, fmt.Errorf("channelz GetServerSockets: %w", err)
			}
			for _, ref := range resp.SocketRef {
				sockets++
				start = max(start, ref.SocketId+1)
				sk, err := cz.GetSocket(ctx, &channelzpb.GetSocketRequest{SocketId: ref.SocketId})
				if err != nil {
					continue // closed meanwhile
				}
				d := sk.GetSocket().GetData()
				streams += int(d.GetStreamsStarted() - d.GetStreamsSucceeded() - d.GetStreamsFailed())
			}
			if resp.End || len(resp.SocketRef) == 0 {
				break
			}
		}
	}
	return sockets, streams, true, nil
}

// endOfRun is the run as a Service's EndOfRun step sees it.
type endOfRun struct{ r *run }

// HonestScopes implements EndOfRun.
func (e endOfRun) HonestScopes() []string {
	seen := map[string]bool{}
	for _, c := range e.r.clients {
		if !c.beh.Attack {
			for _, sc := range c.plan.Scopes {
				seen[sc] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for sc := range seen {
		out = append(out, sc)
	}
	sort.Strings(out)
	return out
}

// Dial implements EndOfRun: the first target that answers (failover).
func (e endOfRun) Dial() (*grpc.ClientConn, error) {
	cn, err := dial(e.r.opts.targets, &e.r.opts)
	if err != nil {
		return nil, err
	}
	return cn.cc, nil
}

// Token implements EndOfRun.
func (e endOfRun) Token(user string) string { return e.r.token(user) }

// Limit implements EndOfRun.
func (e endOfRun) Limit() time.Duration { return e.r.opts.stopGrace }

// Emit implements EndOfRun.
func (e endOfRun) Emit(ev *event.Event) { e.r.emitRun(ev) }

// readDocuments is collab's EndOfRun: it reads every edited document's
// text from a fresh snapshot and emits it as a ServerState event for the
// convergence check (after every editor has stopped).
func readDocuments(ctx context.Context, r EndOfRun) {
	cc, err := r.Dial()
	if err != nil {
		return
	}
	defer cc.Close()
	for _, doc := range r.HonestScopes() {
		text, version, err := snapshot(ctx, cc, doc, r.Token("bidikit-observer"), r.Limit())
		if err != nil {
			// The harness's own limit or cancel is not the server's
			// status: marked as the client's end, status-codes leaves it
			// (convergence is not measurable without the text either way).
			e := &event.Event{Kind: event.Error, Scope: doc, Code: status.Code(err), Detail: "reading the server's snapshot: " + err.Error()}
			if c := status.Code(err); c == codes.DeadlineExceeded || c == codes.Canceled || ctx.Err() != nil {
				e.Field = event.FieldClientEnd
			}
			r.Emit(e)
			continue
		}
		r.Emit(&event.Event{Kind: event.ServerState, Scope: doc, Seq: version, Text: text})
	}
}

// snapshot opens doc on a new stream, reads its Opened snapshot and ends
// the stream the interop way.
func snapshot(ctx context.Context, cc *grpc.ClientConn, doc, token string, limit time.Duration) (string, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	st, err := collabv1.NewCollabServiceClient(cc).Edit(ctx)
	if err != nil {
		return "", 0, err
	}
	if err := st.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: doc, ClientId: "bidikit-observer"}}}); err != nil {
		return "", 0, err
	}
	for {
		ev, err := st.Recv()
		if err != nil {
			return "", 0, err
		}
		if o := ev.GetOpened(); o != nil {
			_ = st.CloseSend()
			for {
				if _, err := st.Recv(); err != nil {
					if err == io.EOF {
						break
					}
					break
				}
			}
			return o.Text, o.Version, nil
		}
	}
}
