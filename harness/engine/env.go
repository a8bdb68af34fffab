package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
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
// URL and a connection of its own to the target for health and channelz,
// never through the fault proxy.
type env struct {
	opts *options
	c    *conn
}

var _ check.Env = (*env)(nil)

func newEnv(ctx context.Context, o *options) (*env, error) {
	c, err := dial(o.target, o)
	if err != nil {
		return nil, err
	}
	return &env{opts: o, c: c}, nil
}

func (e *env) close() { _ = e.c.cc.Close() }

// AdminURL implements check.Env.
func (e *env) AdminURL() string { return e.opts.adminURL }

// Healthy implements check.Env: the target's overall gRPC health.
func (e *env) Healthy(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.dialTimeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(e.c.cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return false, err
	}
	return resp.Status == healthpb.HealthCheckResponse_SERVING, nil
}

// ErrUnreachable is wrapped by Run's error when the target does not answer
// gRPC within the dial timeout; no later scenario can do better.
var ErrUnreachable = errors.New("target unreachable")

// preflight fails within the dial timeout when the target does not answer
// gRPC at all: a health check, retried while the connection is refused.
// Any answer (even UNIMPLEMENTED: no health service) proves a gRPC server.
func (e *env) preflight(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.opts.dialTimeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, e.opts.dialTimeout)
		_, err := healthpb.NewHealthClient(e.c.cc).Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		switch status.Code(err) {
		case codes.OK, codes.Unimplemented, codes.NotFound, codes.Unauthenticated, codes.PermissionDenied:
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), context.Canceled) {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %s did not answer gRPC within %v: %s", ErrUnreachable, e.opts.target, e.opts.dialTimeout, status.Convert(last).Message())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Channelz implements check.Env: open sockets and streams over all of the
// target's servers, through the channelz service (ok=false when it does not
// serve it). The count includes this env's own connection.
func (e *env) Channelz(ctx context.Context) (sockets, streams int, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.opts.dialTimeout)
	defer cancel()
	cz := channelzpb.NewChannelzClient(e.c.cc)
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

// serverState reads every edited document's text from a fresh snapshot and
// emits one ServerState event per document (collab runs, after the
// editors have stopped).
func (r *run) serverState(ctx context.Context) {
	docs := map[string]bool{}
	for _, c := range r.clients {
		if _, ok := c.d.(*collabDriver); ok && !c.beh.Attack {
			docs[c.plan.Scopes[0]] = true
		}
	}
	names := make([]string, 0, len(docs))
	for d := range docs {
		names = append(names, d)
	}
	sort.Strings(names)
	cn, err := dial(r.opts.target, &r.opts)
	if err != nil {
		return
	}
	defer cn.cc.Close()
	for _, doc := range names {
		text, version, err := snapshot(ctx, cn.cc, doc, r.token("bidikit-observer"), r.opts.stopGrace)
		if err != nil {
			r.emitRun(&event.Event{Kind: event.Error, Scope: doc, Code: status.Code(err), Detail: "reading the server's snapshot: " + err.Error()})
			continue
		}
		r.emitRun(&event.Event{Kind: event.ServerState, Scope: doc, Seq: version, Text: text})
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
