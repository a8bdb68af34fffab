package refcluster_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
)

func TestRefcluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "internal/refcluster")
}

// Every spec starts its own nats-server; after it, every goroutine
// (nats-server's background loops included) must be gone.
var _ = BeforeEach(func() {
	baseline := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
	})
})
