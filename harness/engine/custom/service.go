// Package custom drives any gRPC bidirectional-streaming method through a
// scenario's `protocol:` mapping (harness/protocol): `service: custom`
// (issue #16). It plugs into the engine by the driver contract only
// (engine.RegisterService, engine.RegisterBehaviour): the service compiles
// the mapping once per run when the run starts (Service.Prepare: server
// reflection needs the target), and each virtual client's Driver encodes
// the mapping's outgoing templates and classifies what the server sends
// into the engine's events (Join, Deliver, Ack, Error, Leave).
//
// Behaviours: chatter, lurker and resumer are registered for this service
// under the chat behaviours' names; every attack behaviour of the engine
// (flooder, slow-reader, malformed-sender, oversize-sender,
// reconnect-storm, open-cancel, the HTTP/2 attacks) uses the Attacker
// driver; every stream and connection fault acts as on any service.
//
// What each check needs from a mapping is protocol.Spec.NotMeasurable's
// table; the scenario parser turns a check whose fields are not provided
// into a not-measurable verdict naming them. Import this package (as
// harness/suite does) for a program to run custom scenarios.
package custom

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/protocol"
	"github.com/bidikit/bidikit/harness/scenario"
)

// runState is one run's compiled mapping, shared read-only by its drivers
// (engine.Service.State).
type runState struct {
	m     *protocol.Mapping
	runID string
	token func(user string) string // the bearer token user presents
	// trackAcks: acks name the client message they answer, so the driver
	// keeps each unacknowledged message to resend after a reconnect.
	trackAcks bool
	// matchOwn: a delivery of the client's own message is matched to its
	// send (by client_msg_id, or by sender_seq for an echo) for its latency
	// and, for an echo, its message id.
	matchOwn bool
	// joinedRule: the server confirms joins; without it a room is joined
	// (and its sends go out) as soon as the stream opens.
	joinedRule bool
}

func init() {
	engine.RegisterService(engine.Service{Name: scenario.Custom, Prepare: prepare})
}

// prepare compiles the scenario's mapping against the descriptors (from
// the target's reflection, or the protoset or .proto files it names) and
// returns the run's service: the mapped method, its request metadata and
// the attackers' driver. A mapping that does not fit the descriptors is a
// *scenario.Error with the file, line and column.
func prepare(ctx context.Context, env engine.RunEnv) (engine.Service, error) {
	s := env.Scenario()
	if s.Protocol == nil {
		return engine.Service{}, &scenario.Error{File: s.File, Line: 1, Col: 1, Path: "protocol",
			Msg: "a custom scenario needs its protocol block (Scenario.Protocol)"}
	}
	conn, target := env.Conn()
	d, err := protocol.LoadDescriptors(ctx, s.Protocol, conn, target)
	if err != nil {
		return engine.Service{}, err
	}
	m, err := protocol.Compile(s.Protocol, d)
	if err != nil {
		return engine.Service{}, err
	}
	st := newRunState(m, env.RunID())
	st.token = env.Token
	md := m.Method()
	return engine.Service{
		Desc:   &grpc.StreamDesc{StreamName: string(md.Name()), ServerStreams: true, ClientStreams: true},
		Method: m.FullMethod(),
		Attacker: func(c engine.Client, bodyBytes int, _ bool) (engine.Driver, error) {
			return newDriver(c, bodyBytes)
		},
		Header: func(user, token string) metadata.MD {
			md := m.Metadata(protocol.Values{Client: user, Token: token, Session: st.runID})
			if md == nil {
				md = metadata.MD{}
			}
			return md
		},
		State: st,
	}, nil
}

func newRunState(m *protocol.Mapping, runID string) *runState {
	in := func(k protocol.Kind, f protocol.Field) bool { return m.Mapped(protocol.In(k, f)) }
	return &runState{m: m, runID: runID,
		trackAcks:  in(protocol.Ack, protocol.FieldClientMsgID),
		matchOwn:   m.Echo() || (in(protocol.Delivery, protocol.FieldClientMsgID) && !in(protocol.Delivery, protocol.FieldSentAt)),
		joinedRule: m.Mapped(protocol.Rule(protocol.Joined)),
	}
}

// stateOf is the run's compiled mapping, as the service's Prepare left it.
func stateOf(c engine.Client) (*runState, error) {
	st, ok := c.ServiceState().(*runState)
	if !ok || st == nil {
		return nil, fmt.Errorf("custom: no compiled protocol mapping for this run (the service's Prepare did not run)")
	}
	return st, nil
}
