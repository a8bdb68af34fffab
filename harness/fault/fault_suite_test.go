package fault_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/goccy/go-yaml"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/fault"
)

func TestFault(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "fault")
}

// Every spec must leave no goroutine behind: toxic removers, proxy pumps,
// restart timers all end by the time the spec's cleanups have run.
var _ = BeforeEach(func() {
	baseline := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
	})
})

// yamlParams returns a strict decoder over src, as the scenario parser's.
func yamlParams(src string) func(any) error {
	return func(into any) error {
		if src == "" {
			src = "{}"
		}
		return yaml.UnmarshalWithOptions([]byte(src), into, yaml.DisallowUnknownField())
	}
}

// build looks up name and builds it from YAML parameters.
func build(name, params string) (fault.Fault, fault.Spec, error) {
	return fault.New(name, yamlParams(params))
}

// mustBuild is build that fails the spec on error.
func mustBuild(name, params string) fault.Fault {
	GinkgoHelper()
	f, _, err := build(name, params)
	Expect(err).NotTo(HaveOccurred())
	return f
}

// fakeClient records every call a stream fault makes, as a string.
type fakeClient struct {
	idx   int
	mu    sync.Mutex
	calls []string
}

func (c *fakeClient) record(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, fmt.Sprintf(format, args...))
}

func (c *fakeClient) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

func (c *fakeClient) Index() int              { return c.idx }
func (c *fakeClient) Role() string            { return "honest" }
func (c *fakeClient) CancelStream()           { c.record("CancelStream") }
func (c *fakeClient) HalfClose()              { c.record("HalfClose") }
func (c *fakeClient) AbruptClose()            { c.record("AbruptClose") }
func (c *fakeClient) StopReading()            { c.record("StopReading") }
func (c *fakeClient) Pause(d time.Duration)   { c.record("Pause(%s)", d) }
func (c *fakeClient) Burst(n int)             { c.record("Burst(%d)", n) }
func (c *fakeClient) SendMalformed()          { c.record("SendMalformed") }
func (c *fakeClient) SendOversized(bytes int) { c.record("SendOversized(%d)", bytes) }
func (c *fakeClient) ResumeStale(back uint64) { c.record("ResumeStale(%d)", back) }

// fakeServer records Kill and Restart.
type fakeServer struct {
	mu               sync.Mutex
	kills, restarts  int
	killErr          error
	restartCtxIsLive bool
}

func (s *fakeServer) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kills++
	return s.killErr
}

func (s *fakeServer) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restarts++
	s.restartCtxIsLive = ctx.Err() == nil
	return nil
}

func (s *fakeServer) counts() (kills, restarts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kills, s.restarts
}

// env is a fault.Env with whatever the spec gives it.
type env struct {
	proxy  *toxiproxy.Proxy
	server fault.Server
}

func (e env) Proxy() *toxiproxy.Proxy { return e.proxy }
func (e env) Server() fault.Server {
	if e.server == nil {
		return nil
	}
	return e.server
}
