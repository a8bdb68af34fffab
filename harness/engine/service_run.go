package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/bidikit/bidikit/harness/scenario"
)

// A per-run service (issue #16). Most services are fixed at init: their
// method, their header (`authorization: Bearer <token>`), their drivers. A
// service described by the scenario itself (service: custom, a protocol
// mapping whose descriptors may come from the server's reflection) sets
// three more Service fields:
//
//   - Prepare runs once per run, after preflight (the targets answered)
//     and before the service probe and any client: it returns the Service
//     this run uses, with its Desc and Method, its Attacker and the rest.
//     An error ends the run before any client starts; when the scenario
//     file is at fault (a mapping that does not fit the server's
//     descriptors), errors.As finds a *scenario.Error in it, with the file,
//     line and column.
//   - Header, when set, is the request metadata of every stream a client
//     opens (the probe's too), instead of the bearer token.
//   - State is handed to this run's drivers (Client.ServiceState): a
//     compiled mapping, say.

// RunEnv is what a Service's Prepare may use.
type RunEnv interface {
	// Scenario is the scenario being run.
	Scenario() *scenario.Scenario
	// Conn is a connection to the first target that answered preflight,
	// and that target's address; the engine closes it at the run's end.
	Conn() (grpc.ClientConnInterface, string)
	// Token is the bearer token user presents (WithToken, or its user id).
	Token(user string) string
	// RunID is the run's id (WithRunID): what tells this run's messages
	// from an earlier run's.
	RunID() string
}

// runEnv is the engine's RunEnv.
type runEnv struct{ r *run }

func (e runEnv) Scenario() *scenario.Scenario { return e.r.s }

func (e runEnv) Token(user string) string { return e.r.token(user) }

func (e runEnv) RunID() string { return e.r.opts.runID }

func (e runEnv) Conn() (grpc.ClientConnInterface, string) {
	for i, live := range e.r.env.live {
		if live {
			return e.r.env.conns[i].cc, e.r.opts.targets[i]
		}
	}
	return e.r.env.conns[0].cc, e.r.opts.targets[0]
}

// prepare runs the service's Prepare, when it has one, and keeps the
// Service it returns for the run.
func (r *run) prepare(ctx context.Context) error {
	if r.svc.Prepare == nil {
		return nil
	}
	svc, err := r.svc.Prepare(ctx, runEnv{r})
	if err != nil {
		var se *scenario.Error
		if errors.As(err, &se) {
			return err // names the file, line and column already
		}
		return fmt.Errorf("%s: service %s: %w", r.s.File, r.s.Service, err)
	}
	if svc.Desc == nil || svc.Method == "" || svc.Attacker == nil {
		return fmt.Errorf("%s: service %s: Prepare returned a service without its method (Desc, Method) or Attacker", r.s.File, r.s.Service)
	}
	svc.Name, svc.Prepare = r.svc.Name, nil
	r.svc = svc
	return nil
}

// outgoing is ctx carrying the request metadata of a stream user opens:
// the service's Header, or the bearer token.
func (s *Service) outgoing(ctx context.Context, user, token string) context.Context {
	if s.Header == nil {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	md := s.Header(user, token)
	if old, ok := metadata.FromOutgoingContext(ctx); ok {
		md = metadata.Join(old, md)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// headerPairs is the same metadata as key-value pairs (HTTP/2 attacks).
func (s *Service) headerPairs(user, token string) [][2]string {
	if s.Header == nil {
		return [][2]string{{"authorization", "Bearer " + token}}
	}
	md := s.Header(user, token)
	var out [][2]string
	for _, k := range slices.Sorted(maps.Keys(md)) {
		for _, v := range md[k] {
			out = append(out, [2]string{k, v})
		}
	}
	return out
}
