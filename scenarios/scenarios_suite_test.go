package scenarios_test

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

// TestScenarios runs the scenario library's CI subset against the reference
// server (see scenarios_test.go and README.md).
func TestScenarios(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "scenarios")
}

// bidikitBin is the bidikit binary built once per suite run (by process 1
// under ginkgo -p; every process uses it) for scenarios that need the server
// as a subprocess (kill -9). buildErr says why it could not be built.
var (
	binDir     string
	bidikitBin string
	buildErr   string
)

var _ = SynchronizedBeforeSuite(func() []byte {
	dir, err := os.MkdirTemp("", "bidikit-scenarios-")
	Expect(err).NotTo(HaveOccurred())
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "bidikit"), "./cmd/bidikit")
	cmd.Dir = moduleRoot()
	why := ""
	if out, err := cmd.CombinedOutput(); err != nil {
		why = "go build ./cmd/bidikit: " + err.Error() + "\n" + string(out)
	}
	return []byte(dir + "\n" + why)
}, func(data []byte) {
	binDir, buildErr, _ = strings.Cut(string(data), "\n")
	bidikitBin = filepath.Join(binDir, "bidikit")
})

var _ = SynchronizedAfterSuite(func() {}, func() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
})

// moduleRoot is the directory holding go.mod.
func moduleRoot() string {
	GinkgoHelper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	Expect(err).NotTo(HaveOccurred())
	gomod := strings.TrimSpace(string(out))
	Expect(gomod).NotTo(BeEmpty(), "not inside a Go module")
	return filepath.Dir(gomod)
}

// toxiproxyLinks matches the goroutines toxiproxy v2.12.0 runs for each
// proxied connection (a link's reader and its chain of toxic stubs). After a
// "reset" (reset_peer) fault some of them can stay blocked for good: when a
// link's writer quits on a write error nobody drains the chain, so the first
// stub (NoopToxic.Pipe) blocks on its send and the reader on its
// ChanWriter.Write, and stopping the proxy cannot reach them. harness/fault
// stops the proxy properly; the leak is inside toxiproxy (reported to the
// lead). These are the only goroutines the leak check tolerates; the proxy's
// own listener goroutines are still checked.
const toxiproxyLinks = "github.com/Shopify/toxiproxy/v2.(*ToxicLink)..."

// Every spec must leave no goroutine of the harness or the in-process
// server behind.
var _ = BeforeEach(func() {
	baseline := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).
			ShouldNot(gleak.HaveLeaked(baseline, gleak.IgnoringCreator(toxiproxyLinks)))
	})
})
