package generic_test

import (
	"context"
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bidikit/bidikit/bench/generic"
)

var _ = Describe("Config.Validate", func() {
	ok := generic.Config{Call: "grpc.testing.TestService/FullDuplexCall", Insecure: true}
	DescribeTable("rejects bad flags with a message naming them",
		func(mod func(*generic.Config), msg string) {
			c := ok
			mod(&c)
			err := generic.Defaults(c).Validate()
			Expect(errors.Is(err, generic.ErrUsage)).To(BeTrue(), "error %v", err)
			Expect(err).To(MatchError(ContainSubstring(msg)))
		},
		Entry("no --call", func(c *generic.Config) { c.Call = "" }, "--call is required"),
		Entry("--call without a method", func(c *generic.Config) { c.Call = "TestService" }, `--call "TestService": want package.Service/Method`),
		Entry("--call with a space", func(c *generic.Config) { c.Call = "grpc.testing.TestService/Full Duplex" }, "want package.Service/Method"),
		Entry("missing --proto file", func(c *generic.Config) { c.Proto = "/no/such/test.proto" }, `--proto "/no/such/test.proto": no such file`),
		Entry("missing --protoset file", func(c *generic.Config) { c.Protoset = "/no/such.protoset" }, "--protoset"),
		Entry("--proto and --protoset", func(c *generic.Config) { c.Proto, c.Protoset = "a", "b" }, "exclude each other"),
		Entry("--data not JSON", func(c *generic.Config) { c.Data = "{nope" }, "--data is not JSON"),
		Entry("--metadata not an object", func(c *generic.Config) { c.Metadata = "[1]" }, "--metadata"),
		Entry("more connections than streams", func(c *generic.Config) { c.Concurrency, c.Connections = 2, 3 }, "--connections 3"),
		Entry("--insecure with TLS flags", func(c *generic.Config) { c.CACert = ""; c.ServerName = "x" }, "--insecure excludes"),
		Entry("unknown --vs tool", func(c *generic.Config) { c.Vs = "k6" }, `--vs "k6"`),
		Entry("unknown fault", func(c *generic.Config) { c.Faults = []string{"jitterbug=1"} }, `--fault "jitterbug=1"`),
		Entry("stream fault", func(c *generic.Config) { c.Faults = []string{"cancel"} }, "connection faults only"),
		Entry("bad fault parameter", func(c *generic.Config) { c.Faults = []string{"latency=0ms"} }, "latency"),
	)

	It("accepts ghz-style calls in both spellings", func() {
		for _, call := range []string{"grpc.testing.TestService/FullDuplexCall", "grpc.testing.TestService.FullDuplexCall"} {
			c := ok
			c.Call = call
			Expect(generic.Defaults(c).Validate()).To(Succeed())
		}
	})

	DescribeTable("parses connection faults",
		func(spec string) {
			_, err := generic.ParseFault(spec)
			Expect(err).NotTo(HaveOccurred())
		},
		Entry(nil, "latency=50ms"),
		Entry(nil, "latency:latency=50ms,jitter=5ms"),
		Entry(nil, "bandwidth=100"),
		Entry(nil, "reset"),
	)
})

var _ = Describe("Preflight", func() {
	It("says the target is unreachable within the dial timeout", func(ctx SpecContext) {
		base := gleak.Goroutines()
		// A context bound, not a timing assertion: Preflight must return on
		// its own well before the spec times out.
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := generic.Preflight(cctx, "127.0.0.1:1", insecure.NewCredentials(), 500*time.Millisecond)
		Expect(cctx.Err()).NotTo(HaveOccurred())
		Expect(err).To(MatchError(ContainSubstring("target 127.0.0.1:1 unreachable")))
		Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(base))
	}, SpecTimeout(30*time.Second))
})
