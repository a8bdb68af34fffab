package collab_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
)

func TestCollab(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "collab")
}

// Every spec checks for leaked goroutines once everything it started has
// stopped: registered first, this cleanup runs last.
var _ = BeforeEach(func() {
	baseline := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(10 * 1e9).ShouldNot(gleak.HaveLeaked(baseline))
	})
})
