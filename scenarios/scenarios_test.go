package scenarios_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/engine"
	_ "github.com/bidikit/bidikit/harness/engine/custom" // service: custom and its behaviours (scenarios/custom)
	"github.com/bidikit/bidikit/harness/matchers"
	"github.com/bidikit/bidikit/harness/report"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/harness/spawn"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/scenarios"
)

// The CI subset is chosen by a marker line in each file's top comment:
//
//	# ci: in-process     run against the reference server started in-process
//	# ci: spawn-server   run against `bidikit serve` as a subprocess (kill -9)
//	# ci: manual         kept out of CI (too long, or needs a target)
//
// Every file in ciFolders must carry one of them; soak/ files must not be
// marked for CI. A new file without a marker fails "the library" specs.
const (
	modeInProcess = "in-process"
	modeSpawn     = "spawn-server"
	modeManual    = "manual"
)

// ciFolders hold the scenarios the CI suite chooses from.
var ciFolders = []string{"chat", "collab", "game", "faults", "dos"}

// libraryFolders is every folder of the library, smoke (run by the engine's
// own suite and embedded in the binary) and soak (not in CI) and custom (third-party servers, manual) included.
var libraryFolders = []string{"chat", "collab", "game", "faults", "dos", "smoke", "soak", "custom"}

// scenarioTimeout bounds one CI scenario: a run of about 10s, its settle,
// the leaks checker's settle (at most 20s in the CI files) and start-up,
// with room for a loaded CI machine under -race.
const scenarioTimeout = 2 * time.Minute

var markerRE = regexp.MustCompile(`^#\s*ci:\s*(\S+)\s*$`)

// header is a scenario file's leading comment block.
type header struct {
	// prose is the comment without its marker line, one string.
	prose string
	// mode is the marker's value ("" when there is none).
	mode string
}

// readHeader reads the comment lines at the top of a scenario file.
func readHeader(file string) (header, error) {
	f, err := os.Open(file)
	if err != nil {
		return header{}, err
	}
	defer f.Close()
	var h header
	var prose []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#") {
			break
		}
		if m := markerRE.FindStringSubmatch(line); m != nil {
			h.mode = m[1]
			continue
		}
		if t := strings.TrimSpace(strings.TrimPrefix(line, "#")); t != "" {
			prose = append(prose, t)
		}
	}
	h.prose = strings.Join(prose, " ")
	return h, sc.Err()
}

// scenarioFiles lists dir's *.yaml and *.yml files, sorted.
func scenarioFiles(dir string) []string {
	var out []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		out = append(out, m...)
	}
	sort.Strings(out)
	return out
}

// ciEntries builds one table entry per CI-marked file (at tree
// construction, in every parallel process alike), except the exercises
// (exercise_test.go), which run there.
func ciEntries() []TableEntry {
	var out []TableEntry
	for _, dir := range ciFolders {
		for _, f := range scenarioFiles(dir) {
			h, err := readHeader(f)
			if err != nil || (h.mode != modeInProcess && h.mode != modeSpawn) {
				continue // "the library" specs report unreadable or unmarked files
			}
			if exercised(f) {
				continue // run by exercise_test.go, with its probe
			}
			out = append(out, Entry(f+" ("+h.mode+")", f, h.mode, SpecTimeout(scenarioTimeout)))
		}
	}
	return out
}

// testLog logs to the spec's GinkgoWriter (shown only on failure).
func testLog(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: level}))
}

// startInProcess starts the reference server in-process on free loopback
// ports, as `bidikit run` without --target does; it stops at cleanup.
func startInProcess() (target, adminURL string) {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := reference.StartDefault(ctx, testLog(slog.LevelError))
	if err != nil {
		cancel()
		Fail("starting the in-process reference server: " + err.Error())
	}
	DeferCleanup(func() {
		cancel()
		_ = srv.Wait()
	})
	return srv.Addr(), "http://" + srv.AdminAddr()
}

// startSpawned starts `bidikit serve` as a subprocess with a SQLite file in
// a temporary folder, as `bidikit run --spawn-server` does; it is stopped
// and its folder removed at cleanup.
func startSpawned(ctx context.Context) *spawn.Server {
	GinkgoHelper()
	if buildErr != "" {
		Fail("bidikit could not be built for the spawned server:\n" + buildErr)
	}
	dir, err := os.MkdirTemp("", "bidikit-spawn-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	srv, err := spawn.Start(sctx, spawn.Options{Binary: bidikitBin, DB: filepath.Join(dir, "bidikit.db"), Output: GinkgoWriter})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(srv.Stop)
	return srv
}

// verdictTable renders res as `bidikit run` prints it: the verdict table,
// evidence of failed checks and the figures line.
func verdictTable(res result.Scenario, target string) string {
	run := &result.Run{Passed: res.Passed, Seed: res.Seed, Target: target, StartedAt: time.Now().UTC(),
		Scenarios: []result.Scenario{res}}
	var b bytes.Buffer
	if err := report.Write(&b, "text", run); err != nil {
		return "rendering the verdict table: " + err.Error()
	}
	return b.String()
}

var _ = Describe("the scenario library", func() {
	It("parses every scenario file in every folder, soak and smoke included, with unique names", func() {
		scs, err := scenario.Load(".")
		Expect(err).NotTo(HaveOccurred())
		var files int
		for _, dir := range libraryFolders {
			n := len(scenarioFiles(dir))
			Expect(n).To(BeNumerically(">", 0), "folder %s has no scenario", dir)
			files += n
		}
		Expect(scs).To(HaveLen(files), "scenario files outside the known folders: add the folder to libraryFolders")
		for _, s := range scs {
			Expect(s.Checks).NotTo(BeEmpty(), "%s proves nothing: it has no checks", s.File)
		}
	})

	It("says in each file's top comment what the scenario proves, and whether CI runs it", func() {
		ci := map[string]bool{}
		for _, d := range ciFolders {
			ci[d] = true
		}
		for _, dir := range libraryFolders {
			for _, f := range scenarioFiles(dir) {
				h, err := readHeader(f)
				Expect(err).NotTo(HaveOccurred())
				Expect(len(h.prose)).To(BeNumerically(">=", 40), "%s: the top comment must say what the scenario proves", f)
				switch {
				case ci[dir]:
					Expect(h.mode).To(BeElementOf(modeInProcess, modeSpawn, modeManual),
						"%s: mark it `# ci: in-process`, `# ci: spawn-server` or `# ci: manual`", f)
				case dir == "soak":
					Expect(h.mode).To(BeElementOf("", modeManual), "%s: soak scenarios are too long for CI", f)
				default:
					Expect(h.mode).To(BeEmpty(), "%s: CI markers belong to the folders %v", f, ciFolders)
				}
			}
		}
	})

	It("has CI scenarios in every CI folder and one against a spawned server", func() {
		per := map[string]int{}
		spawned := 0
		for _, dir := range ciFolders {
			for _, f := range scenarioFiles(dir) {
				h, err := readHeader(f)
				Expect(err).NotTo(HaveOccurred())
				if h.mode == modeInProcess || h.mode == modeSpawn {
					per[dir]++
				}
				if h.mode == modeSpawn {
					spawned++
				}
			}
		}
		for _, dir := range ciFolders {
			Expect(per[dir]).To(BeNumerically(">", 0), "no CI scenario in %s", dir)
		}
		Expect(spawned).To(BeNumerically(">", 0))
		for _, x := range exercises {
			h, err := readHeader(x.file)
			Expect(err).NotTo(HaveOccurred(), "exercise %s", x.file)
			Expect(h.mode).To(Equal(x.mode), "%s: its CI marker and its exercise entry disagree", x.file)
		}
		Expect(len(ciEntries())+len(exercises)).To(Equal(func() int {
			n := 0
			for _, c := range per {
				n += c
			}
			return n
		}()), "every CI scenario runs once: in the CI table or as an exercise")
	})

	It("parses the smoke suite built into the binary", func() {
		entries, err := fs.ReadDir(scenarios.Smoke, scenarios.SmokeDir)
		Expect(err).NotTo(HaveOccurred())
		Expect(entries).NotTo(BeEmpty())
		for _, e := range entries {
			name := path.Join(scenarios.SmokeDir, e.Name())
			data, err := fs.ReadFile(scenarios.Smoke, name)
			Expect(err).NotTo(HaveOccurred())
			_, err = scenario.Parse("(built-in) "+name, data)
			Expect(err).NotTo(HaveOccurred())
		}
	})
})

var _ = DescribeTable("CI scenarios against the reference server",
	func(ctx SpecContext, file, mode string) {
		scs, err := scenario.Load(file)
		Expect(err).NotTo(HaveOccurred())
		Expect(scs).To(HaveLen(1))
		s := scs[0]

		opts := []engine.Option{engine.WithInsecure(), engine.WithLogger(testLog(slog.LevelWarn))}
		var target, adminURL string
		switch mode {
		case modeInProcess:
			target, adminURL = startInProcess()
		case modeSpawn:
			srv := startSpawned(ctx)
			target, adminURL = srv.Addr(), "http://"+srv.AdminAddr()
			opts = append(opts, engine.WithFaultEnv(srv))
		default:
			Fail(fmt.Sprintf("%s: unknown CI mode %q", file, mode))
		}
		opts = append(opts, engine.WithTarget(target), engine.WithServerEnv(adminURL))

		res, err := engine.Run(ctx, s, opts...)
		table := func() string { return verdictTable(res, target) }
		Expect(err).NotTo(HaveOccurred(), table)
		Expect(res.Clients).To(Equal(s.Clients()))
		Expect(res.Messages.Sent).To(BeNumerically(">", 0), table)
		Expect(res).To(matchers.PassAllChecks(), table)
	},
	ciEntries(),
)
