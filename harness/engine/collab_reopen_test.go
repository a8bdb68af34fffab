package engine_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
)

// refusingOpens forwards collab Edit streams to the reference server, but
// answers the first Open of every stream with UNAVAILABLE itself (what a
// clustered server says while it elects a document's stream leader), so the
// client must open again. refused counts those answers.
type refusingOpens struct {
	collabv1.UnimplementedCollabServiceServer
	up      collabv1.CollabServiceClient
	refused atomic.Int64
}

func (p *refusingOpens) Edit(down grpc.BidiStreamingServer[collabv1.ClientEvent, collabv1.ServerEvent]) error {
	ctx := down.Context()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	up, err := p.up.Edit(ctx)
	if err != nil {
		return err
	}
	fromUp := make(chan error, 1)
	go func() {
		for {
			ev, err := up.Recv()
			if err != nil {
				fromUp <- err
				return
			}
			if err := down.Send(ev); err != nil {
				fromUp <- err
				return
			}
		}
	}()
	refusedOne := false
	for {
		ev, err := down.Recv()
		if errors.Is(err, io.EOF) {
			_ = up.CloseSend()
			if err := <-fromUp; !errors.Is(err, io.EOF) {
				return err
			}
			return nil
		}
		if err != nil {
			return err
		}
		if o := ev.GetOpen(); o != nil && !refusedOne {
			refusedOne = true
			p.refused.Add(1)
			if err := down.Send(&collabv1.ServerEvent{Event: &collabv1.ServerEvent_Error{Error: &collabv1.Error{
				Code: uint32(codes.Unavailable), Message: "electing the document's leader", Field: "open.document", Document: o.Document}}}); err != nil {
				return err
			}
			continue
		}
		if err := up.Send(ev); err != nil {
			return err
		}
	}
}

var _ = Describe("an editor whose Open is answered UNAVAILABLE", func() {
	It("opens the document again after a back-off and edits as usual", func(ctx SpecContext) {
		srv := startReference()
		Eventually(func() bool { return hosts(srv, scenario.Collab) }).WithTimeout(10 * time.Second).Should(BeTrue())
		cc, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cc.Close)
		proxy := &refusingOpens{up: collabv1.NewCollabServiceClient(cc)}
		gs := grpc.NewServer()
		collabv1.RegisterCollabServiceServer(gs, proxy)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		go func() { _ = gs.Serve(lis) }()
		DeferCleanup(gs.Stop)

		s, err := scenario.Parse("reopen.yaml", []byte(`name: reopen
service: collab
seed: 3
duration: 3s
ramp: 200ms
settle: 500ms
roles:
  - {name: editor, count: 3, behaviour: editor, documents: 1, rate: 4/s}
checks: [no-gaps, no-duplicates, delivery-order]
`))
		Expect(err).NotTo(HaveOccurred())
		log := &eventLog{}
		res, err := engine.Run(context.WithoutCancel(ctx), s, engine.WithTarget(lis.Addr().String()), engine.WithTap(log))
		Expect(err).NotTo(HaveOccurred(), describe(res))
		Expect(proxy.refused.Load()).To(BeNumerically(">=", 3), "Opens the proxy refused")
		joins, acks := map[int]int{}, map[int]int{}
		for _, e := range log.all() {
			switch e.Kind {
			case event.Join:
				joins[e.Client]++
			case event.Ack:
				acks[e.Client]++
			}
		}
		for c := range 3 {
			Expect(joins[c]).To(BeNumerically(">=", 1), "client %d never opened its document after the refusal", c)
			Expect(acks[c]).To(BeNumerically(">", 0), "client %d had no op acknowledged", c)
		}
		Expect(res.Passed).To(BeTrue(), describe(res))
	}, SpecTimeout(60*time.Second))
})
