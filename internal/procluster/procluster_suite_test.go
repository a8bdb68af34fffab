package procluster_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
)

func TestProcluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "procluster")
}

// bin is the bidikit binary the members run, built once per suite run
// (process 1 builds it, without -race, every parallel process uses it).
var bin string

var _ = SynchronizedBeforeSuite(func() []byte {
	dir, err := os.MkdirTemp("", "bidikit-procluster-")
	Expect(err).NotTo(HaveOccurred())
	out, err := exec.Command("go", "env", "GOMOD").Output()
	Expect(err).NotTo(HaveOccurred())
	root := filepath.Dir(strings.TrimSpace(string(out)))
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "bidikit"), "./cmd/bidikit")
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "the members run `bidikit serve`: go build ./cmd/bidikit failed:\n%s", b)
	return []byte(filepath.Join(dir, "bidikit"))
}, func(data []byte) {
	bin = string(data)
})

var _ = SynchronizedAfterSuite(func() {}, func() {
	if bin != "" {
		_ = os.RemoveAll(filepath.Dir(bin))
	}
})

// Every spec must leave no goroutine (and no process) behind.
var _ = BeforeEach(func() {
	baseline := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
	})
})
