package custom_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/matchers"
)

// xvalScenario is the cross-validation scenario for service (chat, or
// custom with its protocol block appended). Its event counts do not depend
// on timing: the talkers' paced rate is one message an hour (a slot inside
// the run would show as sends beyond the bursts'), they send only in two
// bursts of five at fixed times, alone in their rooms with one lurker each
// (joined long before), and the resumer is away during the second burst,
// so that it gets it replayed. Every check of the chat catalogue judges.
func xvalScenario(service, protocolBlock string) string {
	return `name: xval-` + service + `
service: ` + service + `
seed: 11
duration: 3600ms
settle: 500ms
roles:
  - {name: talk, count: 4, behaviour: chatter, rooms: 4, rate: 1/h}
  - {name: lurk, count: 4, behaviour: lurker, rooms: 4}
  - name: resume
    count: 1
    behaviour: resumer
    rooms: 4
    rate: 1/h
    params: {reconnect_every: 1500ms, offline: 500ms}
faults:
  - {fault: burst, at: 700ms, roles: [talk], params: {count: 5}}
  - {fault: burst, at: 1750ms, roles: [talk], params: {count: 5}}
checks:
  - total-order
  - no-gaps
  - no-duplicates
  - delivery-order
  - no-lost-acks
  - sender-fifo
  - realtime-order
  - resume-complete
  - status-codes
  - leaks: {settle: 5s}
` + protocolBlock
}

// chatChecks are the checks the cross-validation scenario lists.
var chatChecks = []string{"total-order", "no-gaps", "no-duplicates", "delivery-order", "no-lost-acks", "sender-fifo",
	"realtime-order", "resume-complete", "status-codes", "leaks"}

var _ = Describe("bidikit.chat.v1 through a protocol mapping (cross-validation)", func() {
	It("gives the native chat driver's verdicts and event counts on the same seed, against the reference server", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		native := parseIn(dir, "native.yaml", xvalScenario("chat", ""))
		// Descriptors from the reference's reflection: compiled when the
		// run starts.
		mapped := parseIn(dir, "mapped.yaml", xvalScenario("custom", chatProtocol("")))
		Expect(mapped.Protocol).NotTo(BeNil())

		addr, admin := startReference()
		nres, ncounts := run(ctx, native, addr, admin)
		addr, admin = startReference() // a fresh server: rooms start at seq 1 again
		mres, mcounts := run(ctx, mapped, addr, admin)

		// The scenario is timing-free only if the talkers sent their two
		// bursts and nothing else.
		Expect(ncounts[event.Send]).To(Equal(4*2*5), "native sends: %s", ncounts)
		Expect(ncounts[event.Deliver]).To(BeNumerically(">", 2*40), "native deliveries: %s", ncounts)
		Expect(mcounts).To(Equal(ncounts), "event counts by kind: mapped %s, native %s", mcounts, ncounts)
		Expect(statuses(mres)).To(Equal(statuses(nres)))
		Expect(nres).To(matchers.PassCheck(chatChecks...), describe(nres))
		for _, v := range mres.Checks {
			Expect(v.Status).To(Equal(check.Pass), "%s through the mapping: %s", v.Name, v.Summary)
		}
	}, SpecTimeout(2*time.Minute))
})
