package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bidikit/bidikit/harness/metrics"
	"github.com/bidikit/bidikit/harness/scenario"
)

// PreflightHeader is the metadata key a preflight probe stream carries (value
// "1") besides the clients' own authorization metadata, so that a server or
// a test double can tell the probe from the scenario's clients.
const PreflightHeader = "bidikit-preflight"

// ErrRejected is matched (errors.Is) by Run's error when the service probe
// was refused with UNAUTHENTICATED, PERMISSION_DENIED or UNIMPLEMENTED:
// every client would be refused the same way, so no client runs. The error
// is a *RejectedError.
var ErrRejected = errors.New("preflight: the target refused the scenario's service")

// RejectedError is one target's refusal of the service probe. Error() is
// one line: who refused what with which code, and what to change.
type RejectedError struct {
	Target string     // the instance that refused (host:port)
	Method string     // e.g. "bidikit.chat.v1.ChatService/Connect"
	Code   codes.Code // Unauthenticated, PermissionDenied or Unimplemented
	Detail string     // the server's status message, on one line
	Fix    string     // what to change, naming the flag
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("preflight: %s answered a %s stream with %s (%s): %s",
		e.Target, e.Method, metrics.CodeName(e.Code), e.Detail, e.Fix)
}

// Is makes errors.Is(err, ErrRejected) hold.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Bounds of the service probe's waits (see probeService).
const (
	probeQuietMin, probeQuietMax = 20 * time.Millisecond, 200 * time.Millisecond
	probeDrainMin, probeDrainMax = 200 * time.Millisecond, 2 * time.Second
	probeMaxMessages             = 1000
)

// probeUser is the user whose token the probe presents: the plan's first
// client's (with WithToken every client presents the same token anyway).
func probeUser(p *scenario.Plan) string {
	if len(p.Clients) == 0 {
		return "bidikit-preflight"
	}
	return p.Clients[0].User
}

// probeService opens one stream of the scenario's service on every target
// that answered preflight, in parallel, with the metadata a client of user
// would send, and returns a *RejectedError when a target ends it with
// UNAUTHENTICATED, PERMISSION_DENIED or UNIMPLEMENTED (the first such
// target in list order). It sends no message, so it has no side effect on
// the server's rooms, documents or matches: it waits a short quiet time
// (a few health round trips) for a refusal, then half-closes and reads to
// the end for a little longer. A clean end, a message or silence pass; any
// other code passes too (the clients will meet it, and the checks judge
// it). It blocks at most the dial timeout.
func (e *env) probeService(ctx context.Context, svc Service, user, token string) error {
	desc, method := svc.Desc, svc.Method
	ctx, cancel := context.WithTimeout(ctx, e.opts.dialTimeout)
	defer cancel()
	quiet := min(max(4*e.rtt, probeQuietMin), probeQuietMax)
	drain := min(max(10*quiet, probeDrainMin), probeDrainMax)
	errs := make([]error, len(e.conns))
	done := make(chan struct{}, len(e.conns))
	started := 0
	for i, c := range e.conns {
		if !e.live[i] {
			continue
		}
		started++
		go func() {
			defer func() { done <- struct{}{} }()
			errs[i] = probeStream(svc.outgoing(ctx, user, token), c, desc, method, quiet, drain)
		}()
	}
	for range started {
		<-done
	}
	if err := context.Cause(ctx); errors.Is(err, context.Canceled) {
		return err // the caller's ctx ended
	}
	for i, err := range errs {
		st, ok := status.FromError(err)
		if err == nil || !ok {
			continue
		}
		m := strings.TrimPrefix(method, "/")
		svc, _, _ := strings.Cut(m, "/")
		r := &RejectedError{Target: e.opts.targets[i], Method: m, Code: st.Code(), Detail: oneLine(st.Message())}
		switch st.Code() {
		case codes.Unauthenticated:
			if e.opts.token != "" {
				r.Fix = "the server does not accept the token given with --token: give one it accepts"
			} else {
				r.Fix = fmt.Sprintf("no --token was given, so the probe presented its user id %q as the bearer token (what dev-mode servers accept): give the server's token with --token", user)
			}
		case codes.PermissionDenied:
			r.Fix = fmt.Sprintf("the server accepts the token but does not let its user use %s: give a --token whose user may", svc)
		case codes.Unimplemented:
			r.Fix = fmt.Sprintf("the server does not serve %s: point --target at one that does, or run only scenarios for the services it serves", svc)
		}
		return r
	}
	return nil
}

// probeStream opens one stream and returns its end when that end refuses
// the stream (UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED, as a
// status error); nil otherwise. See probeService for the waits. It returns
// only once its receiving goroutine has.
func probeStream(ctx context.Context, c *conn, desc *grpc.StreamDesc, method string, quiet, drain time.Duration) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	octx := metadata.AppendToOutgoingContext(sctx, PreflightHeader, "1")
	st, err := c.cc.NewStream(octx, desc, method)
	if err != nil {
		return refusal(err)
	}
	ended := make(chan error, 1)
	accepted := make(chan struct{})
	go func() {
		for n := 0; ; n++ {
			// Empty keeps any message as unknown fields: the probe only
			// needs to know that one arrived.
			if err := st.RecvMsg(&emptypb.Empty{}); err != nil || n == probeMaxMessages {
				ended <- err
				return
			}
			if n == 0 {
				close(accepted)
			}
		}
	}()
	// wait returns the stream's end if it comes within d (over), else
	// nil at d, at a first message (acceptedC) or when ctx ends.
	wait := func(d time.Duration, acceptedC <-chan struct{}) (over bool, err error) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case err := <-ended:
			return true, err
		case <-acceptedC:
		case <-t.C:
		case <-ctx.Done():
		}
		return false, nil
	}
	// A refusal at stream start comes within a round trip or two.
	if over, err := wait(quiet, accepted); over {
		return refusal(err)
	}
	// Silence or a message: end our side the interop way and read to the end.
	_ = st.CloseSend()
	if over, err := wait(drain, nil); over {
		return refusal(err)
	}
	cancel() // still silent: the stream was accepted; end it
	<-ended
	return nil
}

// refusal is err when its status refuses the stream, nil otherwise
// (io.EOF, a clean end, or any other code).
func refusal(err error) error {
	if err == nil || err == io.EOF {
		return nil
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented:
		return err
	}
	return nil
}

// oneLine folds s onto one line of at most 200 bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
