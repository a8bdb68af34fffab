package engine_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
)

var _ = Describe("the silent behaviour", func() {
	It("holds streams that never send, beside honest chatters, against the reference", func(ctx SpecContext) {
		s, err := scenario.Parse("silent.yaml", []byte(`
name: silent-streams
service: chat
seed: 3
duration: 2s
roles:
  - name: chatter
    count: 2
    behaviour: chatter
    rooms: 1
    rate: 5/s
  - name: silent
    count: 3
    behaviour: silent
checks:
  - status-codes
  # 2s memberships: a 500ms grace holds them to what came before it
  - no-lost-acks: { grace: 500ms }
`))
		Expect(err).NotTo(HaveOccurred())

		srv := startReference()

		log := &orderTap{}
		res, err := engine.Run(ctx, s, engine.WithTarget(srv.Addr()), engine.WithServerEnv("http://"+srv.AdminAddr()), engine.WithTap(log))
		Expect(err).NotTo(HaveOccurred(), describe(res))
		Expect(res.Passed).To(BeTrue(), describe(res))

		silent := 0
		for i := range 5 {
			evs := log.client(i)
			Expect(evs).NotTo(BeEmpty(), "client %d", i)
			if evs[0].Role != "silent" {
				continue
			}
			silent++
			kinds := map[event.Kind]int{}
			for _, e := range evs {
				kinds[e.Kind]++
			}
			Expect(kinds[event.Connect]).To(Equal(1), "client %d opened its stream once", i)
			Expect(kinds[event.Disconnect]).To(Equal(1), "client %d's stream ended once, at its end", i)
			Expect(kinds).NotTo(HaveKey(event.Send), "client %d sent nothing", i)
			Expect(kinds).NotTo(HaveKey(event.Join), "client %d joined nothing", i)
			for _, e := range evs {
				if e.Kind == event.Disconnect {
					Expect(e.Field).NotTo(Equal(event.FieldCloseGrace), "the server ended the silent stream after its CloseSend")
				}
			}
		}
		Expect(silent).To(Equal(3))
		Expect(res.Messages.Acked).To(BeNumerically(">", 0), "the chatters were served beside them")
	}, SpecTimeout(60*time.Second))
})
