package acl_test

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/reference/acl"
)

var _ = Describe("Load", func() {
	write := func(text string) string {
		p := filepath.Join(GinkgoT().TempDir(), "acl.yaml")
		Expect(os.WriteFile(p, []byte(text), 0o600)).To(Succeed())
		return p
	}

	It("restricts listed rooms and leaves others open", func() {
		a, err := acl.Load(write("rooms: {ops: [alice, bob]}\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(a.Allowed(acl.Room, "ops", "alice")).To(BeTrue())
		Expect(a.Allowed(acl.Room, "ops", "bob")).To(BeTrue())
		Expect(a.Allowed(acl.Room, "ops", "eve")).To(BeFalse())
		Expect(a.Allowed(acl.Room, "lobby", "eve")).To(BeTrue())
		Expect(a.Listed(acl.Room, "ops")).To(BeTrue())
		Expect(a.Listed(acl.Room, "lobby")).To(BeFalse())
		// The room list does not restrict a document of the same name.
		Expect(a.Allowed(acl.Document, "ops", "eve")).To(BeTrue())
	})

	It("reads documents and matches, and an empty list closes a name", func() {
		a, err := acl.Load(write("documents:\n  plan: [alice]\nmatches:\n  final: []\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(a.Documents().Allowed("plan", "alice")).To(BeTrue())
		Expect(a.Documents().Allowed("plan", "bob")).To(BeFalse())
		Expect(a.Matches().Allowed("final", "alice")).To(BeFalse())
		Expect(a.Rooms().Allowed("plan", "bob")).To(BeTrue())
	})

	It("allows everything when nil, Open or empty", func() {
		var none *acl.ACL
		Expect(none.Allowed(acl.Room, "ops", "eve")).To(BeTrue())
		Expect(none.Rooms().Allowed("ops", "eve")).To(BeTrue())
		Expect(acl.Open().Allowed(acl.Match, "x", "eve")).To(BeTrue())
		a, err := acl.Load(write(""))
		Expect(err).NotTo(HaveOccurred())
		Expect(a.Allowed(acl.Room, "ops", "eve")).To(BeTrue())
	})

	DescribeTable("rejects bad files with the line and field",
		func(text string, want ...string) {
			p := write(text)
			_, err := acl.Load(p)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(HavePrefix(p))
			for _, w := range want {
				Expect(err.Error()).To(ContainSubstring(w))
			}
		},
		Entry("unknown top-level field", "rooms:\n  ops: [alice]\nroomz:\n  x: [a]\n", ":3:1:", `unknown field "roomz"; did you mean "rooms"?`),
		Entry("a string instead of a list", "rooms:\n  ops: alice\n", ":2:", "rooms.ops: must be a list"),
		Entry("a duplicate room", "rooms:\n  ops: [a]\n  ops: [b]\n", ":3:", `"ops" already defined`),
		Entry("an empty user id", "rooms:\n  ops: ['']\n", "rooms.ops[0]", "empty user id"),
	)

	It("names a missing file", func() {
		_, err := acl.Load(filepath.Join(GinkgoT().TempDir(), "nope.yaml"))
		Expect(err).To(MatchError(ContainSubstring("nope.yaml")))
	})
})
