package protocol_test

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/protocol"
)

// specFile parses testdata/name.
func specFile(name string) *protocol.Spec {
	path := filepath.Join("testdata", name)
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred(), "fixture %s is missing", path)
	spec, err := protocol.ParseSpec(path, data)
	Expect(err).NotTo(HaveOccurred())
	return spec
}

var _ = Describe("what each check needs from a mapping", func() {
	It("the chat mapping provides everything every chat check needs, as its compiled mapping maps it", func() {
		spec := specFile("chat.yaml")
		m, err := protocol.Compile(spec, chatDescriptors())
		Expect(err).NotTo(HaveOccurred())
		for _, c := range protocol.ChecksWithNeeds() {
			Expect(spec.NotMeasurable(c)).To(BeEmpty(), c)
			Expect(m.Missing(protocol.CheckNeeds(c)...)).To(BeEmpty(), c)
		}
		Expect(spec.FromFiles()).To(BeFalse(), "chat.yaml's descriptors come from reflection")
	})

	It("route-chat names what it lacks: no seq, no sender, no join, no ack", func() {
		spec := specFile("route-chat.yaml")
		Expect(spec.NotMeasurable("delivery-order")).To(Equal("protocol.incoming.delivery.seq is not mapped"))
		Expect(spec.NotMeasurable("sender-fifo")).To(Equal("protocol.incoming.delivery.seq, protocol.incoming.delivery.sender, protocol.incoming.delivery.sender_seq, protocol.incoming.delivery.client_msg_id are not mapped"))
		Expect(spec.NotMeasurable("no-lost-acks")).To(HavePrefix("protocol.incoming.ack.seq, protocol.incoming.ack.client_msg_id"))
		Expect(spec.NotMeasurable("status-codes")).To(BeEmpty())
		Expect(spec.NotMeasurable("leaks")).To(BeEmpty())
		Expect(spec.NotMeasurable("convergence")).To(ContainSubstring("judges collaborative documents"))
	})

	It("an echo provides the room, the sender and the message id it matches by sender seq, and a stream's start", func() {
		spec, err := protocol.ParseSpec("echo.yaml", []byte(`protocol:
  method: grpc.testing.TestService/FullDuplexCall
  echo: true
  outgoing:
    send: '{"response_parameters": [{"size": {{sender_seq}}}]}'
  incoming:
    delivery: {when: has(m.payload), seq: size(m.payload.body), sender_seq: size(m.payload.body)}
`))
		Expect(err).NotTo(HaveOccurred())
		Expect(spec.Echo).To(BeTrue())
		for _, c := range []string{"delivery-order", "no-gaps", "no-duplicates"} {
			Expect(spec.NotMeasurable(c)).To(BeEmpty(), c)
		}
		// Fed, but blind: one observer per stream, and a seq that is the
		// sender's own.
		Expect(spec.NotMeasurable("total-order")).To(ContainSubstring("no two observers can disagree about a seq"))
		Expect(spec.NotMeasurable("sender-fifo")).To(Equal("protocol.incoming.delivery.seq and protocol.incoming.delivery.sender_seq " +
			"are the same expression (size(m.payload.body)): with echo: true a sender's order cannot disagree with itself"))
		Expect(spec.NotMeasurable("no-lost-acks")).To(HavePrefix("protocol.incoming.ack.seq"))
		Expect(spec.Mapped(protocol.In(protocol.Delivery, protocol.FieldSender))).To(BeFalse(), "provided, not mapped")
	})
})
