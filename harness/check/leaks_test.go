package check_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
)

// fakeEnv serves a pprof-like admin endpoint whose goroutine count the test sets.
type fakeEnv struct {
	url        string
	goroutines atomic.Int64
	streams    atomic.Int64
	channelz   bool
}

func (f *fakeEnv) AdminURL() string { return f.url }
func (f *fakeEnv) Channelz(context.Context) (int, int, bool, error) {
	return 1, int(f.streams.Load()), f.channelz, nil
}
func (f *fakeEnv) Healthy(context.Context) (bool, error) { return true, nil }

func newFakeEnv() *fakeEnv {
	f := &fakeEnv{channelz: true}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/debug/pprof/goroutine":
			fmt.Fprintf(w, "goroutine profile: total %d\n", f.goroutines.Load())
		case "/debug/pprof/heap":
			fmt.Fprintf(w, "heap profile: ...\n# HeapInuse = 1048576\n")
		default:
			http.NotFound(w, r)
		}
	}))
	DeferCleanup(srv.Close)
	f.url = srv.URL
	return f
}

var _ = Describe("leaks", func() {
	settle := func(into any) error {
		into.(*check.LeakParams).Settle = 1500 * time.Millisecond
		return nil
	}
	It("passes when the server returns to its baseline", func() {
		env := newFakeEnv()
		env.goroutines.Store(10)
		c, err := check.New("leaks", settle)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.(check.Starter).Start(context.Background(), env)).To(Succeed())
		env.goroutines.Store(500) // under load
		go func() { time.Sleep(300 * time.Millisecond); env.goroutines.Store(12) }()
		v := c.Verdict(context.Background(), env)
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
	})
	It("fails with the figures when goroutines and streams stay up", func() {
		env := newFakeEnv()
		env.goroutines.Store(10)
		c, _ := check.New("leaks", settle)
		Expect(c.(check.Starter).Start(context.Background(), env)).To(Succeed())
		env.goroutines.Store(400)
		env.streams.Store(50)
		v := c.Verdict(context.Background(), env)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence).To(ContainElement(HaveField("Detail", ContainSubstring("goroutines 400 vs baseline 10"))))
		Expect(v.Evidence).To(ContainElement(HaveField("Detail", ContainSubstring("open streams 50 vs baseline 0"))))
	})
	It("is not measurable when the target exposes nothing", func() {
		env := &fakeEnv{}
		c, _ := check.New("leaks", settle)
		Expect(c.(check.Starter).Start(context.Background(), env)).To(Succeed())
		Expect(c.Verdict(context.Background(), env).Status).To(Equal(check.NotMeasurable))
	})
	It("rejects impossible parameters", func() {
		_, err := check.New("leaks", func(into any) error { into.(*check.LeakParams).Settle = -time.Second; return nil })
		Expect(err).To(MatchError(ContainSubstring("settle must be within")))
	})
})
