package cluster_test

import (
	"io"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/metadata"

	"github.com/bidikit/bidikit/internal/chattest"
	"github.com/bidikit/bidikit/internal/refcluster"
	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
)

var _ = Describe("Clustered game matches (reference.Build with --nats)", func() {
	It("puts players joining one match on two instances into the same match", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		ins := []*refcluster.Instance{startInstance(url), startInstance(url)}
		var streams []gamev1.GameService_PlayClient
		var ids []string
		for i, in := range ins {
			st, err := gamev1.NewGameServiceClient(chattest.Dial(GinkgoT(), in.Addr())).Play(
				metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+[]string{"ann", "bob"}[i]))
			Expect(err).NotTo(HaveOccurred())
			Expect(st.Send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: "arena"}}})).To(Succeed())
			ev, err := st.Recv()
			Expect(err).NotTo(HaveOccurred())
			Expect(ev.GetJoined()).NotTo(BeNil(), "got %v", ev)
			ids = append(ids, ev.GetJoined().GetPlayerId())
			streams = append(streams, st)
		}
		Expect(ids[0]).NotTo(Equal(ids[1]))

		By("each player's full view of the match comes to hold both players")
		for i, st := range streams {
			seen := map[string]bool{}
			var lastTick uint64
			first := true
			for range 200 { // about 10 s of ticks at the default 20 Hz
				ev, err := st.Recv()
				Expect(err).NotTo(HaveOccurred())
				tu := ev.GetTick()
				if tu == nil {
					continue
				}
				if !first {
					Expect(tu.GetTick()).To(BeNumerically(">", lastTick), "ticks increase for player %d", i)
				}
				first, lastTick = false, tu.GetTick()
				if tu.GetFull() {
					clear(seen)
				}
				for _, p := range tu.GetPlayers() {
					seen[p.GetPlayerId()] = true
				}
				for _, r := range tu.GetRemoved() {
					delete(seen, r)
				}
				if seen[ids[0]] && seen[ids[1]] {
					break
				}
			}
			Expect(slices.Sorted(func(yield func(string) bool) {
				for id := range seen {
					if !yield(id) {
						return
					}
				}
			})).To(ConsistOf(ids), "player %d sees both instances' players", i)
		}
		for _, st := range streams {
			Expect(st.CloseSend()).To(Succeed())
			for {
				if _, err := st.Recv(); err != nil {
					Expect(err).To(MatchError(io.EOF))
					break
				}
			}
		}
	}, SpecTimeout(40*time.Second))
})
