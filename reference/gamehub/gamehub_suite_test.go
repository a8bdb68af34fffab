package gamehub_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
)

func TestGamehub(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "reference/gamehub")
}

// Every spec starts its own nats-server and game instances; after it, every
// goroutine (nats-server's and the NATS clients' included) must be gone.
var _ = BeforeEach(func() {
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(10 * time.Millisecond)
	baseline := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
	})
})
