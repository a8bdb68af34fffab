package custom

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/protocol"
	"github.com/bidikit/bidikit/harness/scenario"
)

// The honest behaviours of custom scenarios, under the chat behaviours'
// names and with their parameters (engine.ChatterParams, LurkerParams,
// ResumerParams: the same defaults and checks). The attack behaviours are
// the engine's, for every service (they use the service's Attacker: this
// package's driver).

func init() {
	engine.RegisterBehaviour(scenario.Behaviour{Name: "chatter", Service: scenario.Custom, Summary: "joins rooms and sends messages (protocol.outgoing.send)", DefaultRate: 1},
		func() *engine.ChatterParams { return &engine.ChatterParams{BodyBytes: 32, RoomsPerClient: 1} },
		func(c engine.Client, p *engine.ChatterParams) (engine.Driver, error) {
			return newDriver(c, p.BodyBytes)
		})
	engine.RegisterBehaviour(scenario.Behaviour{Name: "lurker", Service: scenario.Custom, Summary: "joins rooms and only reads"},
		func() *engine.LurkerParams { return &engine.LurkerParams{RoomsPerClient: 1} },
		func(c engine.Client, _ *engine.LurkerParams) (engine.Driver, error) { return newDriver(c, 1) })
	engine.RegisterBehaviour(scenario.Behaviour{Name: "resumer", Service: scenario.Custom, Summary: "chats and periodically reconnects, resuming from its last position (protocol.outgoing.resume)", DefaultRate: 1},
		func() *engine.ResumerParams {
			return &engine.ResumerParams{BodyBytes: 32, RoomsPerClient: 1, ReconnectEvery: 5 * time.Second, Offline: 500 * time.Millisecond}
		},
		func(c engine.Client, p *engine.ResumerParams) (engine.Driver, error) {
			d, err := newDriver(c, p.BodyBytes)
			if err != nil {
				return nil, err
			}
			if !d.m.Mapped(protocol.Out(protocol.OutResume)) {
				return nil, fmt.Errorf("behaviour resumer joins again from its last position: %s", protocol.MissingReason([]protocol.Path{protocol.Out(protocol.OutResume)}))
			}
			d.every, d.offline = p.ReconnectEvery, p.Offline
			return d, nil
		})
}

// oversizeField is the field number of the raw oversized message's payload:
// the highest protobuf allows, so that no real field reads it.
const oversizeField = protowire.MaxValidNumber

// Oversized implements engine.Oversizer: a message of the mapping's send
// template with an n-byte body; when that message does not carry the
// body (a template without {{body}}, or a bytes field the body is not
// base64 for), raw bytes instead: one unknown length-delimited field of n
// bytes, a message every server decodes until its size limit refuses it.
func (d *driver) Oversized(s engine.Stream, n int) error {
	d.emitStart()
	body := make([]byte, n)
	for i := range body {
		body[i] = 'x'
	}
	if d.m.Mapped(protocol.Out(protocol.OutSend)) {
		v := d.values(d.rooms[0])
		v.Body, v.ClientMsgID, v.SenderSeq = string(body), "oversized", d.senderSeq+1
		if msg, err := d.m.Encode(protocol.OutSend, v); err == nil && proto.Size(msg) >= n {
			return d.sendBody(s, d.rooms[0], string(body)) // a numbered message, as any other
		}
	}
	d.c.Emit(&event.Event{Kind: event.Send, Scope: d.rooms[0], Detail: "oversized"})
	raw := protowire.AppendTag(nil, oversizeField, protowire.BytesType)
	return s.Send(protowire.AppendBytes(raw, body))
}
