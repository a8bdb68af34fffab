package validate_test

import (
	"errors"
	"fmt"
	"io/fs"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"

	"github.com/bidikit/bidikit/reference/validate"
)

var _ = Describe("SettingError", func() {
	DescribeTable("names the fields, the reason and the cause",
		func(e *validate.SettingError, want string) {
			Expect(e.Error()).To(Equal(want))
		},
		Entry("one field", validate.Settingf("Chat.QueueBytes", "is %d, want >= 1024", 10), "Chat.QueueBytes is 10, want >= 1024"),
		Entry("fields listed", &validate.SettingError{Field: "DevAuth", Also: []string{"TokensFile"}, Reason: "exclude each other"},
			"DevAuth and TokensFile exclude each other"),
		Entry("fields placed", &validate.SettingError{Field: "A", Also: []string{"B", "C"}, Reason: "needs {} or {}"}, "A needs B or C"),
		Entry("a cause", validate.SettingErr("TokensFile", fs.ErrNotExist), "TokensFile: file does not exist"),
	)

	It("is rendered in flag terms through the flags bound to its fields, keeping the cause", func() {
		fset := pflag.NewFlagSet("t", pflag.ContinueOnError)
		fset.String("tokens", "", "")
		fset.Bool("dev-auth", false, "")
		validate.BindFlag(fset, "tokens", "TokensFile")
		validate.BindFlag(fset, "dev-auth", "DevAuth")

		err := validate.FlagError(fset, fmt.Errorf("building: %w", validate.SettingErr("TokensFile", fs.ErrNotExist)))
		Expect(err).To(MatchError("--tokens: file does not exist"))
		Expect(errors.Is(err, fs.ErrNotExist)).To(BeTrue())
		var se *validate.SettingError
		Expect(errors.As(err, &se)).To(BeTrue())
		Expect(se.Field).To(Equal("--tokens"))

		err = validate.FlagError(fset, &validate.SettingError{Field: "DevAuth", Also: []string{"TokensFile", "DB"}, Reason: "exclude each other"})
		Expect(err).To(MatchError("--dev-auth, --tokens and DB exclude each other"), "an unbound field keeps its name")

		plain := errors.New("not a setting")
		Expect(validate.FlagError(fset, plain)).To(BeIdenticalTo(plain))
		Expect(validate.FlagError(nil, validate.Settingf("X", "is bad"))).To(MatchError("X is bad"))
	})
})
