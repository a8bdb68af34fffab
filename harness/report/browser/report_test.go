package browser_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/report"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/reference"
)

// browserTimeout bounds everything the browser does in one spec.
const browserTimeout = 60 * time.Second

// chromium is the browser binary: BIDIKIT_CHROMIUM, else the first of the
// usual names on PATH. A missing browser fails the spec with what to do.
func chromium() string {
	if p := os.Getenv("BIDIKIT_CHROMIUM"); p != "" {
		abs, err := exec.LookPath(p)
		Expect(err).NotTo(HaveOccurred(), "BIDIKIT_CHROMIUM=%q is not an executable browser", p)
		return abs
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Fail("no Chromium to open the HTML report in: none of chromium, chromium-browser, google-chrome, google-chrome-stable " +
		"is on PATH. Install Debian's package as root: `apt-get install -y chromium` " +
		"(or set BIDIKIT_CHROMIUM to a Chrome/Chromium binary). .ci/run installs it when it runs as root.")
	return ""
}

// artifacts is where the report and its screenshot go: BIDIKIT_ARTIFACTS,
// else a new temporary directory that is kept (it is the test's output).
func artifacts() string {
	if d := os.Getenv("BIDIKIT_ARTIFACTS"); d != "" {
		Expect(os.MkdirAll(d, 0o755)).To(Succeed(), "BIDIKIT_ARTIFACTS=%q", d)
		return d
	}
	d, err := os.MkdirTemp("", "bidikit-report-browser-")
	Expect(err).NotTo(HaveOccurred())
	return d
}

// standIn is the fault.Server the kill-server fault acts on. The run's
// server is the in-process reference, which this test keeps serving: the
// stand-in kills and restarts nothing, so that the engine's kill and
// restart markers can be shown in a real report without a subprocess.
type standIn struct {
	mu              sync.Mutex
	kills, restarts int
}

func (s *standIn) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kills++
	return nil
}

func (s *standIn) Restart(ctx context.Context) error {
	t := time.NewTimer(100 * time.Millisecond) // a restart takes a while
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restarts++
	return nil
}

// browserScenario has something for every marker kind: honest chatters and
// lurkers, a flooder from 1s to 2.5s, an abrupt close of half the honest
// clients at 2s, a server kill at 3s restarted 500ms later, and a
// threshold no server meets (every delivery within 1µs), which fails.
const browserScenario = `
name: report-in-a-browser
service: chat
seed: 7
duration: 5s
ramp: 500ms
roles:
  - {name: honest, count: 8, behaviour: chatter, rooms: 2, rate: 10/s}
  - {name: lurker, count: 2, behaviour: lurker, rooms: 2}
  - {name: flooder, count: 1, behaviour: flooder, rooms: 2, rate: 300/s, start: 1s, stop: 2500ms}
faults:
  - {fault: abrupt-close, at: 2s, fraction: 0.5, roles: [honest]}
  - {fault: kill-server, at: 3s, params: {restart_after: 500ms}}
checks:
  - no-gaps
thresholds:
  honest: {max: 1us}
`

// runScenario runs browserScenario against the in-process reference server.
func runScenario(ctx context.Context) result.Scenario {
	sctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError}))
	srv, err := reference.StartDefault(sctx, log)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		cancel()
		_ = srv.Wait()
	})
	s, err := scenario.Parse("report-in-a-browser.yaml", []byte(browserScenario))
	Expect(err).NotTo(HaveOccurred())
	stand := &standIn{}
	res, err := engine.Run(ctx, s, engine.WithTarget(srv.Addr()), engine.WithFaultEnv(stand), engine.WithLogger(log))
	Expect(err).NotTo(HaveOccurred(), "scenario %s: %s", s.Name, res.Failure)
	stand.mu.Lock()
	Expect(stand.kills).To(Equal(1))
	Expect(stand.restarts).To(Equal(1))
	stand.mu.Unlock()
	return res
}

// chart is what the page shows of one time chart, read in the browser.
type chart struct {
	Lines        []string `json:"lines"`        // "role stat" of every drawn line
	LineLengths  []int    `json:"lineLengths"`  // their rendered lengths (px)
	Markers      []string `json:"markers"`      // data-kind of every marker
	MarkerTitles []string `json:"markerTitles"` // their hover texts
	Width        float64  `json:"width"`        // the rendered SVG's width
}

// page is what the test reads from the rendered report.
type page struct {
	Title       string           `json:"title"`
	Charts      map[string]chart `json:"charts"`
	MarkerRows  int              `json:"markerRows"`
	Histograms  int              `json:"histograms"`
	HistoLabels [][]float64      `json:"histoLabels"` // per histogram, the x of each axis label's centre
}

const readPage = `(() => {
  const chart = id => {
    const svg = document.querySelector('#' + id + ' svg');
    if (!svg) return null;
    const lines = [...svg.querySelectorAll('path.series')];
    const markers = [...svg.querySelectorAll('g.marker')];
    return {
      lines: lines.map(p => p.dataset.role + ' ' + p.dataset.stat),
      lineLengths: lines.map(p => Math.round(p.getTotalLength())),
      markers: markers.map(g => g.dataset.kind),
      markerTitles: markers.map(g => g.querySelector('title').textContent),
      width: svg.getBoundingClientRect().width,
    };
  };
  const histos = [...document.querySelectorAll('svg.histogram')];
  return {
    title: document.title,
    charts: {latency: chart('s0-latency'), throughput: chart('s0-throughput')},
    markerRows: document.querySelectorAll('#s0-markers tr.marker-row').length,
    histograms: histos.length,
    histoLabels: histos.map(h => [...h.querySelectorAll('text.xtick')].map(t => {
      const r = t.getBoundingClientRect(); return (r.left + r.right) / 2;
    })),
  };
})()`

var _ = Describe("the HTML report in a browser", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("renders per-role lines, every marker with its evidence, readable histograms, no console error and no fetch", func(ctx SpecContext) {
		browserBin := chromium()
		dir := artifacts()

		res := runScenario(ctx)
		kinds := map[string]int{}
		for _, m := range res.Markers {
			kinds[m.Kind]++
		}
		Expect(kinds).To(Equal(map[string]int{result.MarkAttackStart: 1, result.MarkAttackStop: 1, result.MarkFault: 1,
			result.MarkServerKill: 1, result.MarkServerRestart: 1, result.MarkViolation: len(failed(res))}),
			"markers: %+v", res.Markers)
		Expect(failed(res)).To(ContainElement(HavePrefix("threshold honest max")), "the 1µs threshold fails")

		var buf bytes.Buffer
		Expect(report.Write(&buf, "html", &result.Run{Seed: 7, Target: "in-process reference", StartedAt: time.Now(),
			Scenarios: []result.Scenario{res}})).To(Succeed())
		htmlPath := filepath.Join(dir, "report.html")
		Expect(os.WriteFile(htmlPath, buf.Bytes(), 0o644)).To(Succeed())

		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(browserBin), chromedp.NoSandbox, chromedp.WindowSize(1200, 900))
		bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), browserTimeout)
		defer bcancel()
		actx, acancel := chromedp.NewExecAllocator(bctx, opts...)
		defer acancel()
		tctx, tcancel := chromedp.NewContext(actx)
		defer tcancel()
		Expect(chromedp.Do(tctx)).To(Succeed(), "starting %s", browserBin)

		// Console messages (console API, uncaught exceptions, browser log
		// entries such as a failed load) and requests, from before the load.
		var mu sync.Mutex
		var console, requests []string
		var readers sync.WaitGroup
		lctx, lcancel := context.WithCancel(tctx)
		messages := chromedp.Console(lctx)
		sent := chromedp.Events(lctx, network.RequestWillBeSent)
		readers.Go(func() {
			for m, err := range messages {
				if err != nil {
					return
				}
				mu.Lock()
				console = append(console, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1))
				mu.Unlock()
			}
		})
		readers.Go(func() {
			for ev, err := range sent {
				if err != nil {
					return
				}
				mu.Lock()
				requests = append(requests, ev.Request.URL)
				mu.Unlock()
			}
		})
		defer func() {
			lcancel()
			readers.Wait()
		}()

		Expect(chromedp.Do(tctx, chromedp.Navigate("file://"+htmlPath), chromedp.WaitVisible(chromedp.CSS("#s0-latency svg")))).To(Succeed())
		got, err := chromedp.Run(tctx, chromedp.Evaluate[page](readPage))
		Expect(err).NotTo(HaveOccurred())
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		Expect(err).NotTo(HaveOccurred())
		shot := filepath.Join(dir, "report.png")
		Expect(os.WriteFile(shot, png, 0o644)).To(Succeed())
		AddReportEntry("screenshot", shot)
		AddReportEntry("report", htmlPath)
		fmt.Fprintf(GinkgoWriter, "HTML report: %s\nscreenshot: %s\n", htmlPath, shot)
		Expect(png[:8]).To(Equal([]byte("\x89PNG\r\n\x1a\n")), "a PNG")

		Expect(got.Title).To(Equal("bidikit report — FAILED"))
		for _, name := range []string{"latency", "throughput"} {
			c, ok := got.Charts[name]
			Expect(ok).To(BeTrue(), "chart %s", name)
			Expect(c.Width).To(BeNumerically(">", 300), "chart %s is laid out", name)
			Expect(c.Markers).To(HaveLen(len(res.Markers)), "chart %s: one marker per result marker", name)
			Expect(c.MarkerTitles).To(HaveLen(len(res.Markers)))
			for i, m := range res.Markers {
				Expect(c.MarkerTitles[i]).To(ContainSubstring(m.Detail), "chart %s marker %d: evidence on hover", name, i+1)
			}
			for i, l := range c.LineLengths {
				Expect(l).To(BeNumerically(">", 0), "chart %s: line %s is drawn", name, c.Lines[i])
			}
		}
		Expect(got.Charts["latency"].Lines).To(ContainElements("honest p99", "honest p50", "lurker p99", "lurker p50"))
		Expect(got.Charts["throughput"].Lines).To(ContainElements("honest sent", "honest delivered", "lurker delivered", "flooder sent"))
		Expect(got.MarkerRows).To(Equal(len(res.Markers)))
		Expect(got.Histograms).To(Equal(3), "one latency distribution per role")
		for h, xs := range got.HistoLabels {
			Expect(xs).NotTo(BeEmpty(), "histogram %d has axis labels", h)
			for i := 1; i < len(xs); i++ {
				// Labels are rotated 45°: two do not overlap when their
				// centres are a 10px line (font-size 10) apart across the
				// slant, i.e. dx·sin 45° >= 10.
				Expect((xs[i]-xs[i-1])*0.7071).To(BeNumerically(">=", 10), "histogram %d: labels %d and %d overlap: %v", h, i-1, i, xs)
			}
		}

		lcancel()
		readers.Wait()
		mu.Lock()
		defer mu.Unlock()
		var errs []string
		for _, c := range console {
			if strings.HasPrefix(c, "error:") || strings.HasPrefix(c, "exception:") || strings.HasPrefix(c, "warning:") {
				errs = append(errs, c)
			}
		}
		Expect(errs).To(BeEmpty(), "console: %v", console)
		Expect(requests).To(HaveEach(HavePrefix("file://")), "the report fetches nothing from the network")
	}, SpecTimeout(3*time.Minute))
})

// failed names the checks of res that failed.
func failed(res result.Scenario) []string {
	var out []string
	for _, v := range res.Checks {
		if !v.Passed() {
			out = append(out, v.Name)
		}
	}
	return out
}
