package custom_test

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
)

var _ = Describe("server messages the mapping cannot read", func() {
	It("are unread events, and the checks judging what members received do not blame the server for them", func(ctx SpecContext) {
		// The chat mapping without its ignore rule: presence notices (a
		// member joining the room) match no rule.
		s := mangledChat("unread", "    ignore: {when: 'has(m.presence) || has(m.typing)'}\n", "",
			"  - {name: lurk, count: 2, behaviour: lurker, rooms: 1}\n", "no-gaps", "no-lost-acks", "status-codes")
		addr, admin := startReference()
		res, counts := run(ctx, s, addr, admin)
		Expect(counts[event.Unread]).To(BeNumerically(">", 0), "presence notices came and were reported unread")
		Expect(res.Errors).To(HaveKeyWithValue("harness:unread-no-rule", counts[event.Unread]),
			"the result counts them as the harness's errors")
		for _, v := range res.Checks {
			switch v.Name {
			case "no-gaps", "no-lost-acks":
				Expect(v.Status).NotTo(Equal(check.Fail), "%s: %s", v.Name, v.Summary)
				Expect(v.Summary).To(ContainSubstring("not judged"), v.Name)
				Expect(v.Summary).To(ContainSubstring("(the first: "), "%s says why: %s", v.Name, v.Summary)
				Expect(v.Summary).To(ContainSubstring("matched none of protocol.incoming's rules"), v.Name)
			}
		}
	}, SpecTimeout(time.Minute))

	It("a delivery whose seq reads 0 (a 0-based offset mapped as is) is unread, not a message without a seq", func(ctx SpecContext) {
		s := mangledChat("zero-based", "      seq: it.seq\n", "      seq: it.seq - 1u\n", "", "no-gaps")
		addr, admin := startReference()
		res, counts := run(ctx, s, addr, admin)
		Expect(counts[event.Unread]).To(BeNumerically(">", 0), "the room's first message read seq 0")
		Expect(res.Errors).To(HaveKey("harness:unread-mapping-error"))
		v := res.Checks[0]
		Expect(v.Status).NotTo(Equal(check.Fail), v.Summary)
		Expect(v.Summary).To(ContainSubstring("not judged"))
	}, SpecTimeout(time.Minute))

	It("a message waiting for a join its mapping never confirms was never sent, and no check is told it was", func(ctx SpecContext) {
		s := mangledChat("never-joined", "room: m.joined.room, head_seq", `room: '"elsewhere"', head_seq`, "", "sender-fifo")
		addr, admin := startReference()
		res, counts := run(ctx, s, addr, admin)
		Expect(counts[event.Send]).To(BeZero(), "nothing went out: every message waited for its room")
		Expect(res.Messages.Sent).To(BeZero())
		Expect(res.Checks[0].Status).To(Equal(check.NotMeasurable), res.Checks[0].Summary)
	}, SpecTimeout(time.Minute))
})

// mangledChat is a 1.5s scenario of two chatters (and moreRoles) in one
// room, judged by checks, speaking the chat mapping with its text old
// replaced by new: a mapping broken in one known way.
func mangledChat(name, old, new, moreRoles string, checks ...string) *scenario.Scenario {
	block := chatProtocol("")
	Expect(block).To(ContainSubstring(old))
	block = strings.Replace(block, old, new, 1)
	return parseIn(GinkgoT().TempDir(), name+".yaml", "name: "+name+`
service: custom
seed: 5
duration: 1500ms
settle: 300ms
roles:
  - {name: talk, count: 2, behaviour: chatter, rooms: 1, rate: 10/s}
`+moreRoles+"checks:\n  - "+strings.Join(checks, "\n  - ")+"\n"+block)
}
