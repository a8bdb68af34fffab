package custom_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/scenario"
)

// minimal is a custom scenario around a protocol block.
func minimal(extra, protocolBlock string) string {
	return "name: x\nservice: custom\nduration: 1s\n" + extra +
		"roles:\n  - {name: c, count: 1, behaviour: chatter, rooms: 2}\nchecks: [delivery-order, no-gaps, status-codes]\n" + protocolBlock
}

var _ = Describe("service: custom scenarios", func() {
	DescribeTable("are refused with file:line:col before anything connects",
		func(yaml, want string) {
			_, err := scenario.Parse("bad.yaml", []byte(yaml))
			Expect(err).To(HaveOccurred())
			var se *scenario.Error
			Expect(errors.As(err, &se)).To(BeTrue(), "%v is not a scenario.Error", err)
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry("no protocol block", minimal("", ""), "bad.yaml:1:1: missing field protocol: a custom service needs `protocol:`"),
		Entry("a protocol block on a chat scenario",
			strings.Replace(minimal("", chatProtocol("")), "service: custom", "service: chat", 1),
			"protocol: only a service: custom scenario describes its protocol"),
		Entry("scope_prefix",
			strings.Replace(minimal("", chatProtocol("")), "rooms: 2}", "rooms: 2, scope_prefix: lobby}", 1),
			"roles[0].scope_prefix: a custom protocol names room i by protocol.room_name"),
		Entry("collab's spelling of scopes",
			strings.Replace(minimal("", chatProtocol("")), "rooms: 2}", "documents: 2}", 1),
			"documents is how collab scenarios spread clients; a custom scenario uses rooms:"),
		Entry("a key of the block", minimal("", "protocol:\n  method: a.B/C\n  echoes: true\n  incoming: {delivery: {when: 'true'}}\n"),
			`bad.yaml:9:3: protocol.echoes: unknown field "echoes"; did you mean "echo"?`),
		Entry("echo that is not a boolean", minimal("", "protocol:\n  method: a.B/C\n  echo: yes please\n  incoming: {delivery: {when: 'true'}}\n"),
			`bad.yaml:9:9: protocol.echo: want true or false, got "yes please"`),
	)

	It("compile a mapping whose descriptors are files when parsed: a typo is a scenario error at its character", func() {
		path := filepath.Join(customDir, "route-chat.yaml")
		data, err := os.ReadFile(path)
		Expect(err).NotTo(HaveOccurred())
		typo := strings.Replace(string(data), "string(m.location.latitude)", "string(m.location.latitud)", 1)
		Expect(typo).NotTo(Equal(string(data)), "route-chat.yaml reads m.location.latitude")
		_, err = scenario.Parse(path, []byte(typo))
		var se *scenario.Error
		Expect(errors.As(err, &se)).To(BeTrue(), "%v", err)
		line := 1 + strings.Count(typo[:strings.Index(typo, "latitud)")], "\n")
		Expect(se.Line).To(Equal(line))
		Expect(err.Error()).To(ContainSubstring(`protocol.incoming.delivery.room: undefined field 'latitud' on routeguide.Point; did you mean "latitude"? (fields: latitude, longitude)`))
	})

	It("compile a mapping on reflection when the run starts: a typo ends it before any client connects, as a scenario error", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		block := strings.Replace(chatProtocol(""), "seq: it.seq", "seq: it.sequ", 1)
		s := parseIn(dir, "typo.yaml", minimal("", block)) // reflection: nothing to check yet
		addr, _ := startReference()
		c := counts{}
		res, err := engine.Run(ctx, s, engine.WithTarget(addr), engine.WithTap(c))
		var se *scenario.Error
		Expect(errors.As(err, &se)).To(BeTrue(), "%v", err)
		Expect(se.File).To(Equal(filepath.Join(dir, "typo.yaml")))
		Expect(se.Line).To(BeNumerically(">", 1))
		Expect(err.Error()).To(ContainSubstring(`protocol.incoming.delivery.seq: undefined field 'sequ' on bidikit.chat.v1.Message; did you mean "seq"?`))
		Expect(res.Failure).To(ContainSubstring("sequ"))
		Expect(c).To(BeEmpty(), "no client started")
	}, SpecTimeout(30*time.Second))

	It("make a check not measurable, naming the fields it needs that the mapping lacks", func(ctx SpecContext) {
		// chat.yaml without its joined rule: no head seq to start a member from.
		block := chatProtocol("")
		i := strings.Index(block, "    joined:")
		j := strings.Index(block, "    left:")
		Expect(i).To(BeNumerically(">", 0))
		s := parseIn(GinkgoT().TempDir(), "nojoined.yaml", minimal("", block[:i]+block[j:]))
		got := map[string]check.Verdict{}
		for _, cs := range s.Checks {
			ck, err := cs.New()
			Expect(err).NotTo(HaveOccurred())
			got[cs.Name] = ck.Verdict(ctx, nil)
		}
		Expect(got["no-gaps"].Status).To(Equal(check.NotMeasurable))
		Expect(got["no-gaps"].Summary).To(Equal("protocol.incoming.joined.head_seq is not mapped"))
		// delivery-order needs no join: it is the checker itself, which has
		// seen no events here.
		Expect(got["delivery-order"].Summary).To(HavePrefix("no deliveries to a joined member observed"))
	})
})
