package validate_test

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/reference/validate"
)

var _ = Describe("validate", func() {
	DescribeTable("Name",
		func(v, want string) {
			err := validate.Name("join.room", v)
			if want == "" {
				Expect(err).NotTo(HaveOccurred())
				return
			}
			Expect(err).To(MatchError("join.room: " + want))
		},
		Entry("ok", "lobby-1.a_b", ""),
		Entry("empty", "", "must not be empty"),
		Entry("too long", strings.Repeat("a", 65), "is 65 bytes, longer than 64"),
		Entry("bad byte", "a b", "has ' ' at byte 1; allowed are letters, digits, '.', '_' and '-'"),
	)
	It("checks texts and ids", func() {
		Expect(validate.Text("send.body", "", 10, true)).To(MatchError("send.body: must not be empty"))
		Expect(validate.Text("send.body", "", 10, false)).To(Succeed())
		Expect(validate.Text("send.body", "12345678901", 10, true)).To(MatchError(ContainSubstring("longer than the limit of 10")))
		Expect(validate.Text("send.body", "\xff", 10, true)).To(MatchError("send.body: is not valid UTF-8"))
		Expect(validate.ID("send.client_msg_id", "m1", 128)).To(Succeed())
		Expect(validate.ID("send.client_msg_id", "", 128)).To(MatchError(ContainSubstring("must not be empty")))
		var fe *validate.FieldError
		Expect(validate.ID("x", "\xff", 8)).To(BeAssignableToTypeOf(fe))
	})
})
