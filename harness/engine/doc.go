// Package engine runs a scenario: it turns the seeded plan into virtual
// clients (goroutines, each with a real gRPC bidi stream), fires the fault
// schedule, and feeds the one event stream to the judge (harness/judge:
// metrics and checkers).
//
// Data flows one way, vegeta style. Clients buffer events and hand batches
// to a channel (failures are data: error events and stream-end codes); one
// dispatcher goroutine owns the judge and observes each batch in order;
// verdicts are taken once the clients have stopped, the last batch is
// observed and the scenario's settle time has passed. A client never
// decides a verdict.
//
// # Plugging in a protocol
//
// The engine knows no service by itself. A service registers a Service (its
// bidi method, the driver its attack behaviours speak, an optional
// end-of-run step); behaviours register by name, one file each
// (behaviour_*.go: parameters, their checks, how a client of the behaviour
// is built); faults and checks register in their own packages. A client's
// protocol is a Driver: the engine owns the stream, the pacing, reconnects
// and faults, and the driver says what to send and what a received message
// means, as events. A minimal driver for an echo service that sends one
// numbered message per paced action and reads each echo as a delivery:
//
//	type echoDriver struct {
//		c   engine.Client
//		seq uint64
//		in  echov1.Reply
//	}
//
//	func (d *echoDriver) Message() proto.Message   { return &d.in }
//	func (d *echoDriver) Start(engine.Stream) error { return nil } // nothing to join
//	func (d *echoDriver) Ended()                    {}
//
//	func (d *echoDriver) Act(s engine.Stream, n int) error {
//		for range n {
//			d.seq++
//			d.c.Emit(&event.Event{Kind: event.Send, Scope: "echo", SenderSeq: d.seq})
//			if err := s.Send(&echov1.Request{Seq: d.seq}); err != nil {
//				return err
//			}
//		}
//		return nil
//	}
//
//	func (d *echoDriver) Handle(m proto.Message) {
//		r := m.(*echov1.Reply)
//		d.c.Emit(&event.Event{Kind: event.Deliver, Scope: "echo", Seq: r.Seq, SenderSeq: r.Seq, Sender: d.c.User()})
//	}
//
//	type EchoerParams struct{} // `params:` of the role, strictly decoded
//
//	func init() {
//		engine.RegisterService(engine.Service{Name: "echo",
//			Desc: &echov1.Echo_ServiceDesc.Streams[0], Method: echov1.Echo_Stream_FullMethodName,
//			Attacker: func(c engine.Client, _ int, _ bool) (engine.Driver, error) { return &echoDriver{c: c}, nil }})
//		engine.RegisterBehaviour(scenario.Behaviour{Name: "echoer", Service: "echo", DefaultRate: 10},
//			func() *EchoerParams { return &EchoerParams{} },
//			func(c engine.Client, _ *EchoerParams) (engine.Driver, error) { return &echoDriver{c: c}, nil })
//	}
//
// A driver that needs more implements the optional interfaces: Waker (the
// receive loop hands the send loop work: resends after a join), Finisher
// (wait for the last acknowledgements at the end), Resumer (resume from an
// older position: the resume-stale fault), Oversizer (the oversize-sender
// behaviour and the oversized fault), Stopper (told when its client stops
// for good), Cycler (ends its stream every period and reconnects: a
// resumer). The chat, collab and game drivers in this package are the
// complete examples. A service whose method is known only from the scenario
// and the server (service: custom, a protocol mapping over reflection) sets
// Service.Prepare, Header and State (service_run.go): it becomes the run's
// Service once the targets answer; harness/engine/custom is that driver.
package engine
