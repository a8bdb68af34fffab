package workshop_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/workshop"
)

// noLeaks takes a goroutine baseline and, after the spec, waits for the
// process to return to it (broken servers leak on purpose, but only until
// their stop function runs).
func noLeaks() {
	base := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).
			ShouldNot(gleak.HaveLeaked(base))
	})
}

var _ = Describe("the catalogue", func() {
	It("numbers the exercises 1..n, each with a server, two sheets and a suite", func() {
		all := workshop.All()
		Expect(len(all)).To(BeNumerically(">=", 5))
		for i, ex := range all {
			Expect(ex.Number).To(Equal(i + 1))
			Expect(ex.Dir).To(HavePrefix("ex0"))
			Expect(ex.Service).To(BeElementOf("chat", "collab", "game"))
			Expect(ex.Fails).NotTo(BeEmpty(), "exercise %d promises no failing check", ex.Number)
			src, err := fs.ReadFile(ex.Files, "server.go")
			Expect(err).NotTo(HaveOccurred())
			lines := bytes.Count(src, []byte("\n"))
			Expect(lines).To(BeNumerically("<=", 230), "exercise %d: server.go should read in a few minutes", ex.Number)
			Expect(string(src)).To(ContainSubstring("package " + ex.Package + "\n"))
			Expect(string(src)).To(ContainSubstring("func Register(s *grpc.Server) (stop func())"))

			scs, err := ex.Scenarios()
			Expect(err).NotTo(HaveOccurred(), "exercise %d suite", ex.Number)
			checks := map[string]bool{}
			for _, s := range scs {
				Expect(s.Service).To(Equal(ex.Service))
				for _, c := range s.Checks {
					checks[c.Name] = true
				}
			}
			for _, f := range ex.Fails {
				Expect(checks).To(HaveKey(f), "exercise %d promises %s fails but its suite does not run it", ex.Number, f)
			}
			promised := []string{}
			for name := range criteria[ex.Number] {
				promised = append(promised, name)
			}
			Expect(promised).To(ConsistOf(ex.Fails), "exercise %d: criteria (in this file) name the evidence of each promised check", ex.Number)
			for _, lang := range []string{"en", "ja"} {
				sheet, err := ex.Sheet(lang)
				Expect(err).NotTo(HaveOccurred())
				Expect(len(ex.Hints(lang))).To(BeNumerically(">=", 3), "exercise %d %s hints", ex.Number, lang)
				for _, f := range ex.Fails {
					Expect(sheet).To(ContainSubstring("`"+f+"`"), "exercise %d %s sheet names the failing check %s", ex.Number, lang, f)
				}
			}
			Expect(ex.Hints("en")).To(HaveLen(len(ex.Hints("ja"))), "exercise %d: both sheets have the same hints", ex.Number)
		}
	})

	It("refuses unknown numbers", func() {
		_, err := workshop.Get(99)
		Expect(err).To(MatchError(ContainSubstring("no exercise 99")))
	})
})

var _ = Describe("Start", func() {
	It("serves a broken server with health and an admin endpoint for pprof", func(ctx SpecContext) {
		noLeaks()
		ex, err := workshop.Get(1)
		Expect(err).NotTo(HaveOccurred())
		srv, err := workshop.Start(ex, "127.0.0.1:0", "")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Stop)

		cc, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cc.Close)
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.Status).To(Equal(healthpb.HealthCheckResponse_SERVING))

		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.AdminURL+"/debug/pprof/goroutine?debug=1", nil)
		Expect(err).NotTo(HaveOccurred())
		hr, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		defer hr.Body.Close()
		line, _ := bufio.NewReader(hr.Body).ReadString('\n')
		Expect(line).To(HavePrefix("goroutine profile: total "))
	}, SpecTimeout(20*time.Second))
})

// criteria say, per exercise and promised check, which criterion of the
// check must fire against the broken server: each pattern must match the
// detail of at least one piece of the failed verdict's evidence. A check
// name alone is not enough: fairness fails for a slow reader's stall as for
// an attacker never refused, leaks for goroutines as for streams.
var criteria = map[int]map[string][]string{
	1: {"leaks": {
		`^after \S+: goroutines \d+ vs baseline \d+ \(\+\d+, allowed \+\d+\)$`,
		`^\+\d+ goroutines? \(.*\) in ex01_leaky_chat\.\(\*server\)\.heartbeat server\.go:\d+`}},
	2: {"fairness": {`^attackers sent \d+ messages without ever being refused with RESOURCE_EXHAUSTED$`},
		"game-invariants": {
			`^#\d+ flooder-\d+ \(flooder\): at least \d+ inputs processed over \d+ tick\(s\) by tick \d+ .*, limit 4 per tick`,
			`^#\d+ flooder-\d+ \(flooder\) moved [\d.]+ over \d+ tick\(s\) .*, at most [\d.]+ allowed \(max_step 10`,
			`^#\d+ flooder-\d+ \(flooder\) at \(-?[\d.]+, -?[\d.]+\) outside the 1000x1000 map at tick \d+`}},
	3: {"convergence": {`^replica of #\d+ editors-\d+ \(editors\) diverged at version \d+: first difference at code point \d+`}},
	4: {"fairness": {
		`^attackers sent \d+ messages without ever being refused with RESOURCE_EXHAUSTED$`,
		`^honest delivery p99 under attack \S+ is [\d.]+x the calm p99 \S+ \(max 20\.00x\); harness lag up to \S+ \(scheduler \S+, dispatch \S+\)$`}},
	5: {"leaks": {
		`^after \S+: goroutines \d+ vs baseline \d+ \(\+\d+, allowed \+\d+\)$`,
		`^\+\d+ goroutines? \(.*\) in ex05_ghost_players\.\(\*server\)\.(Play|update) server\.go:\d+`}}, // a leaked Play handler, caught waiting in Play or in update (called by Play) for the lock
	6: {"delivery-order": {`^#\d+ \S+ \((chatters|lurkers)\) received seq \d+ at \S+ after seq \d+ at \S+$`}},
}

// expectCriteria holds out to the criteria of exercise ex: every promised
// check failed with evidence matching each of its patterns, and every
// other check of every scenario passed.
func expectCriteria(ex workshop.Exercise, out workshop.Outcome) {
	text := explain(ex, out)
	want := criteria[ex.Number]
	failed := map[string]bool{}
	details := map[string][]string{} // check -> evidence of its failures, over all scenarios
	for _, s := range out.Scenarios {
		for _, v := range s.Checks {
			if _, promised := want[v.Name]; !promised {
				Expect(v.Passed()).To(BeTrue(), "exercise %d: %s should pass against the broken server:\n%s", ex.Number, v.Name, text)
				continue
			}
			if v.Status == check.Fail {
				failed[v.Name] = true
				for _, e := range v.Evidence {
					details[v.Name] = append(details[v.Name], e.Detail)
				}
			}
		}
	}
	for name, patterns := range want {
		Expect(failed).To(HaveKey(name), "exercise %d: %s should fail:\n%s", ex.Number, name, text)
		for _, p := range patterns {
			Expect(details[name]).To(ContainElement(MatchRegexp(p)),
				"exercise %d: no %s evidence matches %s:\n%s", ex.Number, name, p, text)
		}
	}
}

// The promises: against its broken server each suite fails on exactly the
// checks its sheet names, with the criteria above, and the reference
// server passes the same suite. Runs are sequential: the leaks check
// counts this whole process's goroutines, so two runs at once would
// disturb each other.
var _ = Describe("the suites", func() {
	entries := []TableEntry{}
	for _, ex := range workshop.All() {
		entries = append(entries, Entry(ex.Dir, ex.Number, SpecTimeout(2*time.Minute)))
	}
	DescribeTable("fail on the promised checks against the broken server and pass against the reference",
		func(ctx SpecContext, n int) {
			noLeaks()
			ex, err := workshop.Get(n)
			Expect(err).NotTo(HaveOccurred())

			broken, err := workshop.Check(ctx, ex, workshop.CheckOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(broken.Failed()).To(Equal(ex.Fails), "broken server of exercise %d:\n%s", n, explain(ex, broken))
			Expect(broken.NotMeasurable()).To(BeEmpty(), "broken server of exercise %d:\n%s", n, explain(ex, broken))
			expectCriteria(ex, broken)

			ref, err := workshop.Check(ctx, ex, workshop.CheckOptions{Reference: true})
			Expect(err).NotTo(HaveOccurred())
			Expect(ref.Green()).To(BeTrue(), "reference server on exercise %d:\n%s", n, explain(ex, ref))
		}, entries)
})

// Without an admin URL the leaks check cannot count a student's server's
// goroutines: the leaking exercise server must not come out green.
var _ = Describe("checking a student's server without --admin-url", func() {
	It("says the leaks check is not measurable and why, and is never GREEN", func(ctx SpecContext) {
		noLeaks()
		ex, err := workshop.Get(1)
		Expect(err).NotTo(HaveOccurred())
		Expect(ex.Fails).To(ContainElement("leaks"))
		srv, err := workshop.Start(ex, "127.0.0.1:0", "")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Stop)

		out, err := workshop.Check(ctx, ex, workshop.CheckOptions{Target: srv.Addr})
		Expect(err).NotTo(HaveOccurred())
		text := explain(ex, out)
		Expect(out.Green()).To(BeFalse(), text)
		Expect(out.NotMeasurable()).To(ContainElement("leaks"), text)
		Expect(out.Failed()).NotTo(ContainElement("leaks"), text)
		Expect(text).To(ContainSubstring("? leaks"))
		Expect(text).To(ContainSubstring("not measurable"))
		Expect(text).To(ContainSubstring("--admin-url"))
		Expect(text).NotTo(ContainSubstring("GREEN"))
	}, SpecTimeout(2*time.Minute))
})

var _ = DescribeTable("without an admin URL a leaks pass is not measurable (channelz alone cannot see goroutines)",
	func(in check.Verdict, want check.Status) {
		got := workshop.WithoutAdmin(in)
		Expect(got.Status).To(Equal(want))
		Expect(got.Name).To(Equal(in.Name))
		if in.Status != want {
			Expect(got.Summary).To(And(ContainSubstring("--admin-url"), ContainSubstring(in.Summary)))
		}
	},
	Entry("leaks passed on channelz alone", check.Verdict{Name: "leaks", Status: check.Pass, Summary: "streams back to baseline"}, check.NotMeasurable),
	Entry("leaks failed on channelz: a failure stays", check.Verdict{Name: "leaks", Status: check.Fail, Summary: "streams 9 vs 1"}, check.Fail),
	Entry("leaks not measurable stays", check.Verdict{Name: "leaks", Status: check.NotMeasurable, Summary: "no admin URL"}, check.NotMeasurable),
	Entry("another check's pass stays", check.Verdict{Name: "total-order", Status: check.Pass, Summary: "agree"}, check.Pass),
)

// verdict is a scenario result with one check of status st.
func verdict(name string, st check.Status) result.Scenario {
	return result.Scenario{Name: "s", Checks: []check.Verdict{{Name: name, Status: st, Summary: string(st)}}}
}

var _ = DescribeTable("an outcome is green only when every scenario ran and every check passed on evidence",
	func(scs []result.Scenario, green bool, failed, unmeasured []string, line string) {
		out := workshop.Outcome{Target: "t", Scenarios: scs}
		Expect(out.Green()).To(Equal(green))
		Expect(out.Failed()).To(Equal(failed))
		Expect(out.NotMeasurable()).To(Equal(unmeasured))
		ex, err := workshop.Get(1)
		Expect(err).NotTo(HaveOccurred())
		text := explain(ex, out)
		Expect(text).To(ContainSubstring(line))
		if !green {
			Expect(text).NotTo(ContainSubstring("GREEN"))
		}
	},
	Entry("all passed", []result.Scenario{verdict("leaks", check.Pass), verdict("total-order", check.Pass)},
		true, []string{}, []string(nil), "GREEN: every check passed"),
	Entry("one not measurable", []result.Scenario{verdict("leaks", check.NotMeasurable), verdict("total-order", check.Pass)},
		false, []string{}, []string{"leaks"}, "NOT MEASURABLE: 1 check(s) could not look: leaks"),
	Entry("one failed, one not measurable", []result.Scenario{verdict("total-order", check.Fail), verdict("leaks", check.NotMeasurable)},
		false, []string{"total-order"}, []string{"leaks"}, "RED: 1 check(s) failed: total-order; 1 not measurable: leaks"),
	Entry("failed in one scenario, not measurable in another: failed", []result.Scenario{verdict("leaks", check.Fail), verdict("leaks", check.NotMeasurable)},
		false, []string{"leaks"}, []string(nil), "RED: 1 check(s) failed: leaks"),
	Entry("a scenario that could not run", []result.Scenario{verdict("leaks", check.Pass), {Name: "s2", Failure: "unreachable"}},
		false, []string{"run"}, []string(nil), "RED: 1 check(s) failed: run"),
	Entry("a scenario without checks", []result.Scenario{{Name: "s"}},
		false, []string{}, []string(nil), "NO VERDICT"),
	Entry("no scenario", []result.Scenario(nil),
		false, []string{}, []string(nil), "NO VERDICT"),
)

// failing is a scenario result with one failed check.
func failing(name, detail string) result.Scenario {
	v := check.Verdict{Name: name, Status: check.Fail, Summary: "1 violation"}
	v.Add(check.Evidence{Detail: detail})
	return result.Scenario{Name: "s", Checks: []check.Verdict{v}}
}

func explain(ex workshop.Exercise, out workshop.Outcome) string {
	var b strings.Builder
	_ = workshop.Explain(&b, ex, out, "en", 1)
	return b.String()
}

var _ = Describe("Explain", func() {
	It("teaches from the evidence and escalates hints, ending RED or GREEN", func() {
		ex, err := workshop.Get(1)
		Expect(err).NotTo(HaveOccurred())
		hints := ex.Hints("en")
		red := workshop.Outcome{Target: "t"}
		red.Scenarios = append(red.Scenarios, failing("leaks", "goroutines 140 vs baseline 16"))
		var b strings.Builder
		Expect(workshop.Explain(&b, ex, red, "en", 2)).To(Succeed())
		Expect(b.String()).To(ContainSubstring("goroutines 140 vs baseline 16"))
		Expect(b.String()).To(ContainSubstring("Hint 2 of"))
		Expect(b.String()).To(ContainSubstring(hints[1]))
		Expect(b.String()).To(ContainSubstring("RED: 1 check(s) failed: leaks"))

		b.Reset()
		Expect(workshop.Explain(&b, ex, red, "ja", 99)).To(Succeed())
		Expect(b.String()).To(ContainSubstring(ex.Hints("ja")[len(hints)-1]))
	})

	It("counts what it did not show: violations past the evidence kept, or evidence past one violation", func() {
		ex, err := workshop.Get(6)
		Expect(err).NotTo(HaveOccurred())
		many := check.Verdict{Name: "delivery-order", Status: check.Fail, Summary: "761 deliveries arrived after a higher seq"}
		for i := range 761 {
			many.Add(check.Evidence{Detail: fmt.Sprintf("#1 c (chatters) received seq %d at 1s after seq %d at 1s", i+1, i+2)})
		}
		leak := check.Verdict{Name: "leaks", Status: check.Fail, Summary: "1 figure still above the tolerance"}
		leak.Add(check.Evidence{Detail: "after 6s: goroutines 140 vs baseline 16"})
		for i := range 4 {
			leak.Evidence = append(leak.Evidence, check.Evidence{Detail: fmt.Sprintf("+%d goroutines in f%d", 10+i, i)})
		}
		out := workshop.Outcome{Target: "t", Scenarios: []result.Scenario{{Name: "s", Checks: []check.Verdict{many, leak}}}}
		text := explain(ex, out)
		Expect(text).To(ContainSubstring("… and 758 more"))
		Expect(text).To(ContainSubstring("… and 2 more"))
		Expect(text).To(ContainSubstring("What it means: Each member must receive a room's messages in seq order"))
		Expect(text).NotTo(ContainSubstring("and -"))
	})
})

var _ = Describe("Init", func() {
	root := workshop.FindModuleRoot(".")

	It("finds the bidikit checkout above the package", func() {
		Expect(root).NotTo(BeEmpty())
		Expect(filepath.Join(root, "workshop")).To(BeADirectory())
	})

	It("refuses a folder that is not empty, writing nothing", func() {
		ex, _ := workshop.Get(1)
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "mine.txt"), []byte("x"), 0o644)).To(Succeed())
		Expect(workshop.Init(ex, dir, workshop.InitOptions{Root: root})).To(MatchError(ContainSubstring("not empty")))
		entries, _ := os.ReadDir(dir)
		Expect(entries).To(HaveLen(1))
	})

	It("explains the replace directive when no checkout is known", func() {
		ex, _ := workshop.Get(2)
		dir := filepath.Join(GinkgoT().TempDir(), "ex02")
		Expect(workshop.Init(ex, dir, workshop.InitOptions{})).To(Succeed())
		gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
		Expect(string(gomod)).NotTo(ContainSubstring("replace"))
		readme, _ := os.ReadFile(filepath.Join(dir, "README.md"))
		Expect(string(readme)).To(ContainSubstring("go mod edit -replace github.com/bidikit/bidikit="))
	})

	entries := []TableEntry{}
	for _, ex := range workshop.All() {
		entries = append(entries, Entry(ex.Dir, ex.Number, SpecTimeout(3*time.Minute)))
	}
	DescribeTable("writes a student module that builds and vets against the checkout",
		func(ctx SpecContext, n int) {
			ex, _ := workshop.Get(n)
			dir := filepath.Join(GinkgoT().TempDir(), "student")
			Expect(workshop.Init(ex, dir, workshop.InitOptions{Root: root})).To(Succeed())
			for _, f := range []string{"go.mod", "go.sum", "main.go", "Makefile", "README.md", "README.ja.md", ex.Package + "/server.go"} {
				Expect(filepath.Join(dir, f)).To(BeAnExistingFile())
			}
			gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
			Expect(string(gomod)).To(ContainSubstring("replace github.com/bidikit/bidikit => " + root))
			for _, args := range [][]string{{"build", "./..."}, {"vet", "./..."}} {
				cmd := exec.CommandContext(ctx, "go", args...)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
				out, err := cmd.CombinedOutput()
				Expect(err).NotTo(HaveOccurred(), "go %v in the student module: %s", args, out)
			}
		}, entries)
})
