package generic_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
		Entry("--rate and --window", func(c *generic.Config) { c.Rate, c.Window = 10, 2 }, "exclude each other: pick one mode"),
		Entry("a negative --rate", func(c *generic.Config) { c.Rate = -1 }, "--rate -1"),
		Entry("--stream-interval with --rate", func(c *generic.Config) { c.Rate, c.StreamInterval = 10, time.Millisecond }, "--stream-interval is ghz's pause"),
		Entry("-n with -z", func(c *generic.Config) { c.Total, c.Duration, c.StreamCallCount = 10, time.Second, 5 }, "-n (10 calls) and -z (1s) exclude each other"),
		Entry("-n with unbounded streams", func(c *generic.Config) { c.Total, c.StreamCallCount = 10, 0 }, "with --stream-call-count 0 a call never ends"),
		Entry("-x without -n", func(c *generic.Config) { c.MaxDuration = time.Second }, "-x (--max-duration) bounds a run of -n calls"),
		Entry("--vs ghz with unbounded streams", func(c *generic.Config) { c.Vs = "ghz" },
			"--vs ghz refused: with --stream-call-count 0 each bidikit stream sends until the round ends, while each ghz call sends its data's messages once"),
		Entry("--vs ghz in paced mode", func(c *generic.Config) { c.Vs, c.StreamCallCount, c.Rate = "ghz", 10, 100 }, "--vs ghz refused: ghz has only the saturating mode"),
		Entry("--vs ghz in windowed mode", func(c *generic.Config) { c.Vs, c.StreamCallCount, c.Window = "ghz", 10, 4 }, "this run is windowed"),
		Entry("--vs ghz with -x", func(c *generic.Config) { c.Vs, c.StreamCallCount, c.Total, c.MaxDuration = "ghz", 10, 100, time.Second }, "-x cuts each tool's round"),
	)

	It("accepts --vs ghz when both tools do the same work", func() {
		c := ok
		c.Vs, c.StreamCallCount = "ghz", 100
		Expect(generic.Defaults(c).Validate()).To(Succeed())
		c.Total, c.Duration = 50, 0
		Expect(generic.Defaults(c).Validate()).To(Succeed())
	})

	It("reads -D and -M files, and names a missing one", func() {
		dir := GinkgoT().TempDir()
		data, md := filepath.Join(dir, "d.json"), filepath.Join(dir, "m.json")
		Expect(os.WriteFile(data, []byte(`{"a":1}`), 0o600)).To(Succeed())
		Expect(os.WriteFile(md, []byte(`{"x-k":"v"}`), 0o600)).To(Succeed())
		c, err := generic.Config{DataFile: data, MetadataFile: md}.Resolve()
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Data).To(Equal(`{"a":1}`))
		Expect(c.Metadata).To(Equal(`{"x-k":"v"}`))
		_, err = generic.Config{DataFile: filepath.Join(dir, "nope.json")}.Resolve()
		Expect(err).To(MatchError(ContainSubstring("--data-file")))
		Expect(err).To(MatchError(ContainSubstring("nope.json")))
		_, err = generic.Config{Data: "{}", DataFile: data}.Resolve()
		Expect(err).To(MatchError(ContainSubstring("--data and --data-file (-D) exclude each other")))
	})

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
