package auth_test

import (
	"context"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/reference/auth"
)

func write(content string) string {
	p := filepath.Join(GinkgoT().TempDir(), "tokens.txt")
	Expect(os.WriteFile(p, []byte(content), 0o600)).To(Succeed())
	return p
}

func incoming(kv ...string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
}

var _ = Describe("auth", func() {
	It("loads a token file", func() {
		t, err := auth.LoadTokens(write("# comment\n\ns3cret alice\n t2  bob \n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(t).To(Equal(auth.Tokens{"s3cret": "alice", "t2": "bob"}))
	})
	DescribeTable("names the file and line of a bad token file",
		func(content, want string) {
			_, err := auth.LoadTokens(write(content))
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("three fields", "a b c\n", "tokens.txt:1: want \"TOKEN USER\", got 3 fields"),
		Entry("duplicate", "a x\na y\n", "tokens.txt:2: token listed twice"),
		Entry("empty", "# nothing\n", "no tokens"),
	)
	It("reports a missing file", func() {
		_, err := auth.LoadTokens("/nonexistent/tokens")
		Expect(err).To(MatchError(ContainSubstring("tokens file")))
	})
	DescribeTable("authenticates bearer metadata",
		func(ctx context.Context, a auth.Authenticator, user string, code codes.Code) {
			got, err := auth.Authenticate(ctx, a)
			Expect(status.Code(err)).To(Equal(code))
			Expect(got).To(Equal(user))
		},
		Entry("known token", incoming("authorization", "Bearer s3cret"), auth.Tokens{"s3cret": "alice"}, "alice", codes.OK),
		Entry("unknown token", incoming("authorization", "Bearer nope"), auth.Tokens{"s3cret": "alice"}, "", codes.Unauthenticated),
		Entry("no metadata", context.Background(), auth.Tokens{"s3cret": "alice"}, "", codes.Unauthenticated),
		Entry("not Bearer", incoming("authorization", "Basic abc"), auth.DevMode{}, "", codes.Unauthenticated),
		Entry("dev mode takes the token as the user", incoming("authorization", "Bearer carol"), auth.DevMode{}, "carol", codes.OK),
		Entry("dev mode refuses an empty token", incoming("authorization", "Bearer "), auth.DevMode{}, "", codes.Unauthenticated),
	)
	It("exempts health, reflection and channelz", func() {
		Expect(auth.Exempt("/grpc.health.v1.Health/Check")).To(BeTrue())
		Expect(auth.Exempt("/grpc.channelz.v1.Channelz/GetServers")).To(BeTrue())
		Expect(auth.Exempt("/bidikit.chat.v1.ChatService/Connect")).To(BeFalse())
	})
})
