package h2attack_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
)

func TestH2attack(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "h2attack")
}

// Every spec leaves no goroutine behind: each attack's connections and
// read loops, and the test servers, end by the time its cleanups ran.
var _ = BeforeEach(func() {
	baseline := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
	})
})
