package cluster_test

import (
	"context"
	"io"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/metadata"

	"github.com/bidikit/bidikit/internal/chattest"
	"github.com/bidikit/bidikit/internal/refcluster"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
)

// editStream opens a collab Edit stream as user on the instance's address.
func editStream(ctx context.Context, in *refcluster.Instance, user string) collabv1.CollabService_EditClient {
	GinkgoHelper()
	cc := chattest.Dial(GinkgoT(), in.Addr())
	st, err := collabv1.NewCollabServiceClient(cc).Edit(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+user))
	Expect(err).NotTo(HaveOccurred())
	return st
}

func insertAt(pos, length uint32, text string) *collabv1.Operation {
	var cs []*collabv1.Component
	if pos > 0 {
		cs = append(cs, &collabv1.Component{Kind: &collabv1.Component_Retain{Retain: pos}})
	}
	cs = append(cs, &collabv1.Component{Kind: &collabv1.Component_Insert{Insert: text}})
	if rest := length - pos; rest > 0 {
		cs = append(cs, &collabv1.Component{Kind: &collabv1.Component_Retain{Retain: rest}})
	}
	return &collabv1.Operation{Components: cs}
}

var _ = Describe("Clustered collab documents (reference.Build with --nats)", func() {
	It("shares a document's versions between instances and lets an editor resume on another instance", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		a, b := startInstance(url), startInstance(url)

		ea := editStream(ctx, a, "ann")
		Expect(ea.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: "notes", ClientId: "ann-1"}}})).To(Succeed())
		ev, err := ea.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetOpened().GetVersion()).To(BeZero())

		eb := editStream(ctx, b, "bob")
		Expect(eb.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: "notes", ClientId: "bob-1"}}})).To(Succeed())
		ev, err = eb.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetOpened().GetVersion()).To(BeZero())

		By("ann types on instance A; bob on instance B receives it as version 1")
		Expect(ea.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Submit{Submit: &collabv1.Submit{
			Document: "notes", ClientId: "ann-1", ClientSeq: 1, BaseVersion: 0, Op: insertAt(0, 0, "hi")}}})).To(Succeed())
		ev, err = ea.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetAck().GetVersion()).To(Equal(uint64(1)))
		ev, err = eb.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetOp().GetVersion()).To(Equal(uint64(1)))
		Expect(ev.GetOp().GetClientId()).To(Equal("ann-1"))

		By("bob answers on B at version 2; ann sees it on A")
		Expect(eb.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Submit{Submit: &collabv1.Submit{
			Document: "notes", ClientId: "bob-1", ClientSeq: 1, BaseVersion: 1, Op: insertAt(2, 2, "!")}}})).To(Succeed())
		ev, err = eb.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetAck().GetVersion()).To(Equal(uint64(2)))
		ev, err = ea.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetOp().GetVersion()).To(Equal(uint64(2)))

		By("ann leaves A and resumes from version 1 on B: version 2 is replayed")
		Expect(ea.CloseSend()).To(Succeed())
		_, err = ea.Recv()
		Expect(err).To(MatchError(io.EOF))
		er := editStream(ctx, b, "ann")
		from := uint64(1)
		Expect(er.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: "notes", ClientId: "ann-1", FromVersion: &from}}})).To(Succeed())
		ev, err = er.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetOpened().GetVersion()).To(Equal(uint64(2)))
		Expect(ev.GetOpened().GetSnapshot()).To(BeFalse())
		ev, err = er.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetOp().GetVersion()).To(Equal(uint64(2)))
		Expect(ev.GetOp().GetReplay()).To(BeTrue())

		By("a third instance that never saw the document opens it with the full text")
		c := startInstance(url)
		ec := editStream(ctx, c, "cy")
		Expect(ec.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: "notes", ClientId: "cy-1"}}})).To(Succeed())
		ev, err = ec.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetOpened().GetText()).To(Equal("hi!"))
		Expect(ev.GetOpened().GetVersion()).To(Equal(uint64(2)))
		for _, st := range []collabv1.CollabService_EditClient{eb, er, ec} {
			Expect(st.CloseSend()).To(Succeed())
			_, err = st.Recv()
			Expect(err).To(MatchError(io.EOF))
		}
	}, SpecTimeout(30*time.Second))
})
