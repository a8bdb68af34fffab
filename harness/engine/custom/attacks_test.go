package custom_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
)

// attackScenario has every attack behaviour that speaks the service's
// driver beside honest chatters, for service (chat, or custom with its
// protocol block appended). The status-codes expectations are the chat
// contract's answers to each attack.
func attackScenario(service, protocolBlock string) string {
	return `name: attacks-` + service + `
service: ` + service + `
seed: 21
duration: 2500ms
settle: 300ms
roles:
  - {name: honest, count: 4, behaviour: chatter, rooms: 2, rate: 4/s}
  - {name: flooder, count: 1, behaviour: flooder, rooms: 2, rate: 300/s, start: 500ms}
  - {name: malformed, count: 1, behaviour: malformed-sender, rooms: 2, rate: 4/s}
  - {name: huge, count: 1, behaviour: oversize-sender, rooms: 2, rate: 4/s, params: {bytes: 262144}}
  - {name: long, count: 1, behaviour: oversize-sender, rooms: 2, rate: 4/s, params: {bytes: 8192}}
  - {name: slow, count: 1, behaviour: slow-reader, rooms: 2, params: {read_delay: 200ms}}
  - {name: storm, count: 1, behaviour: reconnect-storm, rooms: 2, rate: 10/s}
  - {name: cancel, count: 1, behaviour: open-cancel, rooms: 2, rate: 50/s}
checks:
  - total-order
  - no-gaps
  - no-duplicates
  - no-lost-acks
  - sender-fifo
  - status-codes:
      expect:
        flooder: [RESOURCE_EXHAUSTED]
        malformed: [INVALID_ARGUMENT]
        huge: [RESOURCE_EXHAUSTED]
        long: [INVALID_ARGUMENT]
` + protocolBlock
}

// joinsByRole counts Join events per role (engine.Tap; read after Run).
type joinsByRole struct{ n map[string]int }

func (j *joinsByRole) Begin(time.Time) {}
func (j *joinsByRole) Events(b []event.Event) {
	for i := range b {
		if b[i].Kind == event.Join {
			j.n[b[i].Role]++
		}
	}
}
func (j *joinsByRole) End(engine.Final) {}

var _ = Describe("the attack behaviours through a protocol mapping", func() {
	It("meet the reference's answers the native chat attackers meet, honest clients keeping their guarantees", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		native := parseIn(dir, "native.yaml", attackScenario("chat", ""))
		mapped := parseIn(dir, "mapped.yaml", attackScenario("custom", chatProtocol("")))
		addr, _ := startReference()
		nres, _ := run(ctx, native, addr, "")
		addr, _ = startReference()
		mres, _ := run(ctx, mapped, addr, "")
		Expect(statuses(mres)).To(Equal(statuses(nres)), "through the mapping:\n%s\nnative:\n%s", describe(mres), describe(nres))
		for _, v := range mres.Checks {
			Expect(v.Status).To(Equal(check.Pass), "%s: %s\n%s", v.Name, v.Summary, describe(mres))
		}
		for _, code := range []string{"RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"} {
			Expect(mres.Errors).To(HaveKey(code), describe(mres))
		}
	}, SpecTimeout(time.Minute))

	It("send an oversized message as raw bytes when the send template carries no body (FullDuplexCall)", func(ctx SpecContext) {
		// 5 MiB: over grpc-go's default 4 MiB receive limit.
		over := parseIn(GinkgoT().TempDir(), "oversize.yaml", `name: fd-oversize
service: custom
duration: 1500ms
settle: 200ms
roles:
  - {name: caller, count: 2, behaviour: chatter, rate: 10/s}
  - {name: huge, count: 1, behaviour: oversize-sender, rate: 2/s, params: {bytes: 5242880}}
  - {name: h2, count: 1, behaviour: rapid-reset, rate: 200/s, params: {streams: 100, duration: 1s}}
checks:
  - delivery-order
  - status-codes: {expect: {huge: [RESOURCE_EXHAUSTED]}}
protocol:
  method: grpc.testing.TestService/FullDuplexCall
  echo: true
  outgoing:
    send: '{"response_parameters": [{"size": {{sender_seq}}}]}'
  incoming:
    delivery: {when: has(m.payload), seq: size(m.payload.body), sender_seq: size(m.payload.body)}
`)
		addr, _ := startInterop() // with reflection: the mapping compiles when the run starts
		joins := &joinsByRole{n: map[string]int{}}
		res, _ := run(ctx, over, addr, "", engine.WithTap(joins)) // this tap instead of run's counts
		expectPassed(res)
		Expect(res.Errors).To(HaveKey("RESOURCE_EXHAUSTED"))
		Expect(res.Messages.Delivered).To(BeNumerically(">", 0))
		// The HTTP/2 attacker encodes its streams' messages with the
		// driver's Start but never reads them: it is no room's member.
		Expect(joins.n).To(HaveKey("caller"))
		Expect(joins.n).NotTo(HaveKey("h2"), "joins by role: %v", joins.n)
	}, SpecTimeout(time.Minute))
})
