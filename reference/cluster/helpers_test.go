package cluster_test

import (
	"log/slog"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/internal/refcluster"
	"github.com/bidikit/bidikit/reference/cluster"
)

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startInstance starts a reference server (refcluster.Config) keeping its
// state in the NATS server at url; the spec's clean-up stops it.
func startInstance(url string) *refcluster.Instance {
	GinkgoHelper()
	return refcluster.Start(GinkgoT(), refcluster.Config(url), testLogger())
}

// newLog opens a cluster.Log on its own connection to url, closed at cleanup.
func newLog(url string, mod func(*cluster.Config)) *cluster.Log {
	GinkgoHelper()
	nc, err := cluster.Connect(url, "test", nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	cfg := cluster.DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	l, err := cluster.New(nc, cfg, nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(l.Close)
	return l
}
