package bench_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/bench"
)

// writeTrace writes a tiny sequential editing trace whose patches turn ""
// into "hello world"; endContent is what the trace claims.
func writeTrace(endContent string, gz bool) string {
	tr := map[string]any{
		"startContent": "", "endContent": endContent,
		"txns": []any{
			map[string]any{"patches": []any{[]any{0, 0, "hello"}, []any{5, 0, " world"}}},
			map[string]any{"patches": []any{[]any{0, 1, "H"}, []any{6, 0, ""}}},
		},
	}
	b, err := json.Marshal(tr)
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "tiny.json")
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		Expect(zw.Close()).To(Succeed())
		b, path = buf.Bytes(), path+".gz"
	}
	Expect(os.WriteFile(path, b, 0o600)).To(Succeed())
	return path
}

var _ = Describe("workloads against the in-process reference server", func() {
	var baseline []gleak.Goroutine
	BeforeEach(func() {
		baseline = gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("chat-echo through the engine, with the bare baseline and its ratio", func(ctx SpecContext) {
		res, err := bench.Run(ctx, bench.ChatEcho, bench.Params{Clients: 4, Rate: 100, Duration: time.Second, Engine: true, Baseline: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Tool).To(Equal("bidikit-engine"))
		Expect(res.Messages).To(BeNumerically(">", 0))
		Expect(res.Deliveries).To(BeNumerically(">", 0))
		Expect(res.LatencyMS.Count).To(BeNumerically(">", 0))
		Expect(res.Vs).NotTo(BeNil())
		Expect(res.Vs.Tool).To(Equal("baseline"))
		Expect(res.Vs.MessagesPerSec).To(BeNumerically(">", 0))
		Expect(res.Vs.Ratio).To(BeNumerically("~", res.MessagesPerSec/res.Vs.MessagesPerSec, 1e-9))
	}, SpecTimeout(60*time.Second))

	DescribeTable("--streams-per-conn: clients share connections, as many as the flag says",
		func(ctx SpecContext, workload string, engine bool) {
			srv, err := bench.StartServer(ctx, 0, nil)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(srv.Stop)
			done := make(chan error, 1)
			var res bench.Result
			go func() {
				var err error
				res, err = bench.Run(ctx, workload, bench.Params{Target: srv.Addr(), Clients: 8, Scopes: 2, Rate: 20,
					StreamsPerConn: 4, Duration: 1500 * time.Millisecond, Engine: engine})
				done <- err
			}()
			most := 0.0 // the most connections the server saw open at once
		poll:
			for range 1000 { // bounded: 1000 x 10ms
				select {
				case err := <-done:
					Expect(err).NotTo(HaveOccurred())
					break poll
				case <-time.After(10 * time.Millisecond):
				}
				most = max(most, openConns(srv.AdminURL()))
			}
			want := 2.0 // 8 clients at 4 per connection
			if engine {
				want++ // the engine's env keeps one connection per target for its checks
			}
			Expect(most).To(Equal(want), "8 clients at 4 per connection")
			Expect(res.Messages).To(BeNumerically(">", 0))
			Expect(res.Params).To(HaveKeyWithValue("streams_per_conn", "4"))
		},
		Entry("chat-echo, bare loop", bench.ChatEcho, false, SpecTimeout(60*time.Second)),
		Entry("chat-fanout, engine", bench.ChatFanout, true, SpecTimeout(60*time.Second)),
		Entry("game-ticks", bench.GameTicks, false, SpecTimeout(60*time.Second)))

	It("chat-fanout delivers each message to every member of its room", func(ctx SpecContext) {
		res, err := bench.Run(ctx, bench.ChatFanout, bench.Params{Clients: 6, Scopes: 2, Rate: 20, Duration: time.Second})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Tool).To(Equal("bidikit-loop"))
		Expect(res.Messages).To(BeNumerically(">", 0))
		// 3 members per room: about 3 deliveries per send (the edges of the
		// measured window may cut a few).
		Expect(res.Deliveries).To(BeNumerically(">", 2*res.Messages))
		Expect(res.DeliveriesPerSec).To(BeNumerically(">", res.MessagesPerSec))
	}, SpecTimeout(60*time.Second))

	It("game-ticks counts tick updates with tick-to-delivery latency", func(ctx SpecContext) {
		res, err := bench.Run(ctx, bench.GameTicks, bench.Params{Clients: 4, Scopes: 2, Rate: 10, Duration: time.Second})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Deliveries).To(BeNumerically(">", 0))
		Expect(res.LatencyOf).To(Equal("tick-to-delivery"))
		Expect(res.LatencyMS.Count).To(BeNumerically(">", 0))
	}, SpecTimeout(60*time.Second))

	It("conn-ramp holds streams up to the cap and reports memory per stream", func(ctx SpecContext) {
		res, err := bench.Run(ctx, bench.ConnRamp, bench.Params{Clients: 40, Step: 20, StepEvery: 10 * time.Millisecond, StreamsPerConn: 10, Duration: 10 * time.Second})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Extra).To(HaveKeyWithValue("streams_held", 40.0))
		Expect(res.Extra).To(HaveKey("bytes_per_stream"))
		Expect(res.Notes).To(ContainElement("stopped: cap reached"))
	}, SpecTimeout(60*time.Second))

	It("collab-trace replays a trace and checks the final text", func(ctx SpecContext) {
		res, err := bench.Run(ctx, bench.CollabTrace, bench.Params{Trace: writeTrace("Hello world", true)})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Messages).To(Equal(int64(3))) // the empty patch is skipped
		Expect(res.Extra).To(HaveKeyWithValue("final_code_points", 11.0))
	}, SpecTimeout(60*time.Second))

	It("collab-trace fails, saying where, when the text differs from endContent", func(ctx SpecContext) {
		_, err := bench.Run(ctx, bench.CollabTrace, bench.Params{Trace: writeTrace("Hello wOrld", false)})
		var mm *bench.TraceMismatchError
		Expect(errors.As(err, &mm)).To(BeTrue(), "error %v", err)
		Expect(mm.Offset).To(Equal(7))
		Expect(mm.Error()).To(ContainSubstring(`at code point 7`))
		Expect(mm.Error()).To(ContainSubstring(`want "Orld", got "orld"`))
	}, SpecTimeout(60*time.Second))
})

var _ = Describe("Check", func() {
	DescribeTable("rejects unusable parameters, naming the flag",
		func(workload string, p bench.Params, msg string) {
			Expect(bench.Check(workload, p)).To(MatchError(ContainSubstring(msg)))
		},
		Entry("unknown workload", "chat-flood", bench.Params{}, `unknown workload "chat-flood"`),
		Entry("collab without a trace", bench.CollabTrace, bench.Params{}, "--trace"),
		Entry("negative rate", bench.ChatEcho, bench.Params{Rate: -1}, "--rate"),
		Entry("negative streams per connection", bench.ChatFanout, bench.Params{StreamsPerConn: -1}, "--streams-per-conn is -1"),
		Entry("streams per connection on collab-trace", bench.CollabTrace, bench.Params{Trace: "t.json", StreamsPerConn: 4}, "collab-trace runs one stream"),
		Entry("more matches than players", bench.GameTicks, bench.Params{Clients: 2, Scopes: 3}, "--scopes 3"),
	)
})

var _ = Describe("JSON", func() {
	It("has the documented keys", func() {
		r := bench.Result{Workload: "chat-echo", Tool: "bidikit-engine", Params: map[string]string{"clients": "1"},
			DurationS: 2, Messages: 10, Deliveries: 20, LatencyMS: bench.Latency{P50: 1, P90: 2, P99: 3, P999: 4, Max: 5, Count: 20},
			ServerRSSBytes: 100, HarnessRSSBytes: 50}
		r.Finish()
		r.SetVs(bench.Result{Tool: "baseline", DurationS: 2, Messages: 20, MessagesPerSec: 10})
		var buf bytes.Buffer
		Expect(bench.JSON(&buf, []bench.Result{r})).To(Succeed())
		var m map[string]any
		Expect(json.Unmarshal(buf.Bytes(), &m)).To(Succeed())
		Expect(m).To(HaveKeyWithValue("workload", "chat-echo"))
		for _, k := range []string{"params", "duration_s", "messages_per_sec", "deliveries_per_sec", "latency_ms", "server_rss_bytes", "harness_rss_bytes", "vs"} {
			Expect(m).To(HaveKey(k))
		}
		Expect(m["messages_per_sec"]).To(Equal(5.0))
		Expect(m["latency_ms"]).To(HaveKeyWithValue("p999", 4.0))
		Expect(m["vs"]).To(HaveKeyWithValue("ratio", 0.5))
		Expect(m["vs"]).To(HaveKeyWithValue("tool", "baseline"))

		path := filepath.Join(GinkgoT().TempDir(), "r.json")
		Expect(os.WriteFile(path, buf.Bytes(), 0o600)).To(Succeed())
		back, err := bench.ReadJSON(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(back).To(HaveLen(1))
		Expect(back[0].Vs.Ratio).To(Equal(0.5))
	})

	It("renders the table and an HTML page with inline SVG", func() {
		r := bench.Result{Workload: "chat-echo", Tool: "bidikit-engine", DurationS: 1, Messages: 10, LatencyMS: bench.Latency{P50: 1, P99: 3}}
		r.Finish()
		var txt, html bytes.Buffer
		Expect(bench.Text(&txt, []bench.Result{r})).To(Succeed())
		Expect(txt.String()).To(ContainSubstring("chat-echo"))
		Expect(bench.HTML(&html, []bench.Result{r})).To(Succeed())
		Expect(html.String()).To(ContainSubstring("<svg"))
		Expect(strings.Count(html.String(), "<rect")).To(BeNumerically(">=", 6))
	})
})

var _ = Describe("Compare", func() {
	runs := func(tool string, mps ...float64) []bench.Result {
		var out []bench.Result
		for _, v := range mps {
			out = append(out, bench.Result{Workload: "chat-echo", Tool: tool, MessagesPerSec: v})
		}
		return out
	}
	delta := func(old, new []bench.Result, o bench.CompareOptions) bench.Delta {
		ds := bench.Compare(old, new, o)
		Expect(ds).To(HaveLen(1))
		Expect(ds[0].Metric).To(Equal("messages_per_sec"))
		return ds[0]
	}
	It("calls a clear difference between 3 and 3 runs significant, with its p-value", func() {
		d := delta(runs("e", 100, 101, 99), runs("e", 120, 121, 119), bench.CompareOptions{})
		Expect(d.Judged).To(BeTrue())
		Expect(d.P).To(BeNumerically("<", 0.05))
		Expect(d.Verdict()).To(MatchRegexp(`^better \(p=0\.0\d\d\)$`))
		d = delta(runs("e", 100, 101, 99), runs("e", 80, 81, 79), bench.CompareOptions{})
		Expect(d.Verdict()).To(HavePrefix("worse (p="))
	})
	It("says no significant difference for 3 and 3 runs that overlap, with its p-value", func() {
		d := delta(runs("e", 100, 110, 90), runs("e", 105, 95, 112), bench.CompareOptions{})
		Expect(d.Judged).To(BeTrue())
		Expect(d.P).To(BeNumerically(">=", 0.05))
		Expect(d.Verdict()).To(MatchRegexp(`^no significant difference \(p=0\.\d{3}\)$`))
	})
	It("cannot judge from fewer than 3 runs a side, however far apart: a +60% p99 from one run each is not 'worse'", func() {
		old := []bench.Result{{Workload: "w", LatencyMS: bench.Latency{P99: 10}}}
		cur := []bench.Result{{Workload: "w", LatencyMS: bench.Latency{P99: 16}}}
		ds := bench.Compare(old, cur, bench.CompareOptions{})
		Expect(ds).To(HaveLen(1))
		Expect(ds[0].Judged).To(BeFalse())
		Expect(ds[0].Verdict()).To(Equal("cannot judge: 1 vs 1 runs (need 3 per side)"))
		Expect(delta(runs("e", 100, 101, 99), runs("e", 200, 201), bench.CompareOptions{}).Verdict()).To(HavePrefix("cannot judge: 3 vs 2 runs"))
	})
	It("uses the U-test on request: 3 runs a side can never reach 0.05 with it, 4 can", func() {
		u := bench.CompareOptions{Test: bench.UTest}
		d := delta(runs("e", 100, 101, 99), runs("e", 120, 121, 119), u)
		Expect(d.P).To(BeNumerically("~", 0.1, 1e-9))
		Expect(d.Verdict()).To(HavePrefix("no significant difference (p=0.100)"))
		Expect(d.Warnings).To(ContainElement(ContainSubstring("need >= 4 samples")))
		d = delta(runs("e", 100, 101, 99, 102), runs("e", 120, 121, 119, 122), u)
		Expect(d.Verdict()).To(Equal("better (p=0.029)"))
	})
	It("calls a significant change under the noise threshold negligible", func() {
		d := delta(runs("e", 100, 100.1, 99.9), runs("e", 101, 101.1, 100.9), bench.CompareOptions{Noise: 0.03})
		Expect(d.Significant).To(BeTrue())
		Expect(d.Verdict()).To(HavePrefix("negligible: +1.0% (p="))
	})
	It("reports medians and spread, and names the test", func() {
		ds := bench.Compare(runs("e", 1, 3, 2, 10), runs("e", 5, 6, 7), bench.CompareOptions{})
		Expect(ds[0].Old).To(Equal(bench.Spread{N: 4, Median: 2.5, Min: 1, Max: 10}))
		var buf bytes.Buffer
		Expect(bench.DeltaText(&buf, ds)).To(Succeed())
		Expect(buf.String()).To(ContainSubstring("2.5 [1..10] (4)"))
		Expect(buf.String()).To(ContainSubstring("significance: Welch's t-test (golang.org/x/perf/benchmath), alpha 0.05"))
	})
	It("treats lower latency as better", func() {
		lat := func(p50 ...float64) []bench.Result {
			var out []bench.Result
			for _, v := range p50 {
				out = append(out, bench.Result{Workload: "w", LatencyMS: bench.Latency{P50: v}})
			}
			return out
		}
		ds := bench.Compare(lat(10, 10.2, 9.8), lat(5, 5.1, 4.9), bench.CompareOptions{})
		Expect(ds).To(HaveLen(1))
		Expect(ds[0].Verdict()).To(HavePrefix("better (p="))
	})
})

// openConns reads bidikit_connections_open from the server's /metrics.
func openConns(adminURL string) float64 {
	resp, err := http.Get(adminURL + "/metrics")
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	m := regexp.MustCompile(`(?m)^bidikit_connections_open (\S+)$`).FindSubmatch(b)
	Expect(m).NotTo(BeNil(), "bidikit_connections_open on /metrics")
	v, err := strconv.ParseFloat(string(m[1]), 64)
	Expect(err).NotTo(HaveOccurred())
	return v
}
