package reference_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("Embedded NATS cluster flags", func() {
	BeforeEach(noLeaks)

	cluster := []string{"--nats-embed", "/tmp/js1", "--nats-cluster-listen", "127.0.0.1:6222",
		"--nats-routes", "nats-route://127.0.0.1:6222,nats-route://127.0.0.1:6223,nats-route://127.0.0.1:6224"}
	with := func(extra ...string) []string { return append(append([]string(nil), cluster...), extra...) }

	It("parses a cluster member's flags, the routes comma-separated", func() {
		cfg, err := parse(with("--nats-server-name", "n1", "--nats-replicas", "3")...)
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.NATSServerName).To(Equal("n1"))
		Expect(cfg.NATSClusterListen).To(Equal("127.0.0.1:6222"))
		Expect(cfg.NATSRoutes).To(Equal([]string{"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"}))
	})

	It("keeps today's standalone embedded server by default", func() {
		cfg, err := parse("--nats-embed", "/tmp/js1")
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.NATSClusterListen).To(BeEmpty())
		Expect(cfg.NATSRoutes).To(BeEmpty())
	})

	DescribeTable("rejects a bad value with a usage error naming the flag",
		func(args []string, flag, detail string) {
			_, err := parse(args...)
			Expect(err).To(MatchError(HavePrefix(flag)))
			Expect(err).To(MatchError(ContainSubstring(detail)))
		},
		Entry("routes without --nats-cluster-listen",
			[]string{"--nats-embed", "/tmp/js1", "--nats-routes", "nats-route://127.0.0.1:6222"}, "--nats-routes", "needs --nats-cluster-listen"),
		Entry("--nats-cluster-listen without routes",
			[]string{"--nats-embed", "/tmp/js1", "--nats-cluster-listen", "127.0.0.1:6222"}, "--nats-cluster-listen", "needs --nats-routes"),
		Entry("--nats-cluster-listen without a port",
			with("--nats-cluster-listen", "127.0.0.1"), "--nats-cluster-listen", "want host:port"),
		Entry("--nats-cluster-listen with a bad port",
			with("--nats-cluster-listen", "127.0.0.1:x"), "--nats-cluster-listen", "bad port"),
		Entry("--nats-cluster-listen on the client address",
			with("--nats-listen", "127.0.0.1:6222"), "--nats-cluster-listen", "same address"),
		Entry("a route that is no URL of a route",
			with("--nats-routes", "http://127.0.0.1:6222"), "--nats-routes", "want nats-route://host:port"),
		Entry("a route without scheme",
			with("--nats-routes", "127.0.0.1:6222"), "--nats-routes", "want nats-route://host:port"),
		Entry("a route without port",
			with("--nats-routes", "nats-route://127.0.0.1:6222,nats-route://127.0.0.1"), "--nats-routes", `"nats-route://127.0.0.1"`),
		Entry("a server name with a space",
			with("--nats-server-name", "node one"), "--nats-server-name", "without spaces"),
		Entry("a bad --nats-listen",
			[]string{"--nats-embed", "/tmp/js1", "--nats-listen", "4222"}, "--nats-listen", "want host:port"),
		Entry("cluster flags without --nats-embed",
			[]string{"--nats-cluster-listen", "127.0.0.1:6222", "--nats-routes", "nats-route://127.0.0.1:6222"}, "--nats-server-name, --nats-cluster-listen and --nats-routes", "give --nats-embed"),
		Entry("routes with --nats (an external server)",
			[]string{"--nats", "nats://127.0.0.1:4222", "--nats-routes", "nats-route://127.0.0.1:6222"}, "--nats-server-name, --nats-cluster-listen and --nats-routes", "give --nats-embed"),
		Entry("three replicas on a standalone embedded server",
			[]string{"--nats-embed", "/tmp/js1", "--nats-replicas", "3"}, "--nats-replicas", "add --nats-cluster-listen"),
	)
})
