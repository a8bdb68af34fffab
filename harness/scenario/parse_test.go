package scenario_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/scenario"
)

// Test fakes registered under names no real checker or fault uses, so the
// parser's tests do not depend on the real catalogues.

type fakeCheckParams struct {
	Threshold float64       `yaml:"threshold"`
	Window    time.Duration `yaml:"window"`
}

type fakeChecker struct{ params *fakeCheckParams }

func (fakeChecker) Observe(*event.Event) {}
func (fakeChecker) Verdict(context.Context, check.Env) check.Verdict {
	return check.Verdict{Status: check.Pass}
}

type fakeFaultParams struct {
	N int `yaml:"n"`
}

type fakeFault struct{ params *fakeFaultParams }

func (fakeFault) Inject(context.Context, fault.Env, []fault.Target) error { return nil }

var _ = registerFakes()

func registerFakes() bool {
	check.Register("test-check", func(decode func(any) error) (check.Checker, error) {
		p := &fakeCheckParams{Threshold: 0.5, Window: time.Second}
		if err := decode(p); err != nil {
			return nil, err
		}
		if p.Threshold > 1 {
			return nil, fmt.Errorf("threshold must be at most 1, got %v", p.Threshold)
		}
		return fakeChecker{params: p}, nil
	})
	check.Register("test-bare-check", func(func(any) error) (check.Checker, error) {
		return fakeChecker{}, nil
	})
	fault.Register(fault.Spec{Name: "test-stream-fault", Scope: fault.Stream,
		New: func(decode func(any) error) (fault.Fault, error) {
			p := &fakeFaultParams{N: 1}
			if err := decode(p); err != nil {
				return nil, fmt.Errorf("test-stream-fault: %w", err)
			}
			return fakeFault{params: p}, nil
		}})
	fault.Register(fault.Spec{Name: "test-conn-fault", Scope: fault.Connection,
		New: func(decode func(any) error) (fault.Fault, error) {
			p := &fakeFaultParams{}
			return fakeFault{params: p}, decode(p)
		}})
	fault.Register(fault.Spec{Name: "test-plain-fault", Scope: fault.Stream,
		New: func(func(any) error) (fault.Fault, error) { return fakeFault{}, nil }})
	return true
}

const fixtures = "../../testdata/scenarios"

func parseFixture(rel string) (*scenario.Scenario, error) {
	path := filepath.Join(fixtures, rel)
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return scenario.Parse(path, data)
}

var _ = Describe("Parse", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() { Eventually(gleak.Goroutines).ShouldNot(gleak.HaveLeaked(baseline)) })
	})

	DescribeTable("rejects a broken file, naming file:line:col, the field and the problem",
		func(file, where, msg string) {
			s, err := parseFixture("broken/" + file)
			Expect(s).To(BeNil())
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(HavePrefix(filepath.Join(fixtures, "broken", file) + ":" + where))
			Expect(err.Error()).To(ContainSubstring(msg))
			var e *scenario.Error
			Expect(errors.As(err, &e)).To(BeTrue())
			Expect(e.File).To(Equal(filepath.Join(fixtures, "broken", file)))
		},
		Entry(nil, "unknown-field.yaml", "8:5: roles[1].cuont: ", `unknown field "cuont"; did you mean "count"?`),
		Entry(nil, "unknown-top-field.yaml", "2:1: duraton: ", `unknown field "duraton"; did you mean "duration"?`),
		Entry(nil, "count-not-number.yaml", "5:5: roles[0].count: ", `must be a whole number, not "two"`),
		Entry(nil, "count-fractional.yaml", "5:5: roles[0].count: ", "must be a whole number, not 2.5"),
		Entry(nil, "count-zero.yaml", "5:5: roles[0].count: ", "must be between 1 and 1000000, got 0"),
		Entry(nil, "count-negative.yaml", "6:5: roles[0].count: ", "got -3"),
		Entry(nil, "duration-zero.yaml", "2:1: duration: ", "must be more than 0"),
		Entry(nil, "duration-unitless.yaml", "2:1: duration: ", "must be a duration with a unit"),
		Entry(nil, "duration-missing.yaml", "1:1: ", "missing field duration"),
		Entry(nil, "ramp-over-duration.yaml", "3:1: ramp: ", "40s must be shorter than duration 30s"),
		Entry(nil, "service-unknown.yaml", "1:1: service: ", `unknown service "chats" (known: chat, collab, game, custom)`),
		Entry(nil, "behaviour-wrong-service.yaml", "6:5: roles[0].behaviour: ", `behaviour "chatter" is for chat scenarios, not collab (for collab: continuation-flood, editor,`),
		Entry(nil, "behaviour-unknown.yaml", "6:5: roles[0].behaviour: ", `unknown behaviour "chater"; did you mean "chatter"? (known: chatter,`),
		Entry(nil, "scope-wrong-spelling.yaml", "7:5: roles[0].documents: ", "a chat scenario uses rooms:"),
		Entry(nil, "rate-bad-unit.yaml", "10:5: roles[1].rate: ", `"5/x" is not a rate: unknown unit "x"`),
		Entry(nil, "rate-zero.yaml", "7:5: roles[0].rate: ", "must be more than 0"),
		Entry(nil, "roles-duplicate.yaml", "7:5: roles[1].name: ", `duplicate role name "honest"`),
		Entry(nil, "roles-empty.yaml", "3:1: roles: ", "must list at least one role"),
		Entry(nil, "roles-missing.yaml", "1:1: ", "missing field roles"),
		Entry(nil, "stop-before-start.yaml", "8:5: roles[0].stop: ", "5s must be after start 10s"),
		Entry(nil, "params-unknown.yaml", "8:7: roles[0].params.bodybytes: ", `unknown field "bodybytes"; did you mean "body_bytes"?`),
		Entry(nil, "params-rooms-per-client.yaml", "9:7: roles[0].params.rooms_per_client: ", "5 is more than the role's 2 rooms"),
		Entry(nil, "params-bad-duration.yaml", "8:7: roles[0].params.reconnect_every: ", `"5x" is not a duration`),
		Entry(nil, "params-offline-too-long.yaml", "9:7: roles[0].params.offline: ", "must be at least 0 and less than reconnect_every (2s), got 3s"),
		Entry(nil, "fault-at-after-duration.yaml", "10:5: faults[0].at: ", "45s is not before the end of the run (duration 30s)"),
		Entry(nil, "fault-unknown-role.yaml", "11:21: faults[0].roles[1]: ", `unknown role "flooders" (roles: honest)`),
		Entry(nil, "fault-fraction.yaml", "11:5: faults[0].fraction: ", "got 1.5"),
		Entry(nil, "fault-probability.yaml", "11:5: faults[0].probability: ", "must be between 0 and 1, got -0.1"),
		Entry(nil, "fault-unknown.yaml", "9:5: faults[0].fault: ", `unknown fault "test-strem-fault"; did you mean "test-stream-fault"? (known: `),
		Entry(nil, "fault-fraction-and-count.yaml", "12:5: faults[0].count: ", "give fraction or count, not both"),
		Entry(nil, "fault-until-without-every.yaml", "11:5: faults[0].until: ", "only means something with every"),
		Entry(nil, "fault-connection-with-roles.yaml", "11:5: faults[0].roles: ", "test-conn-fault is a connection fault"),
		Entry(nil, "fault-params-unknown.yaml", "12:7: faults[0].params.m: ", `unknown field "m"`),
		Entry(nil, "fault-params-not-taken.yaml", "11:5: faults[0].params: ", "fault test-plain-fault takes no params"),
		Entry(nil, "check-unknown.yaml", "10:5: checks[1]: ", `unknown check "test-chek"; did you mean "test-check"? (known: `),
		Entry(nil, "check-params-unknown.yaml", "10:7: checks[0].test-check.thresold: ", `unknown field "thresold"; did you mean "threshold"?`),
		Entry(nil, "check-params-invalid.yaml", "9:5: checks[0].test-check: ", "threshold must be at most 1, got 2"),
		Entry(nil, "check-two-keys.yaml", "9:5: checks[0]: ", "one `name: {params}` mapping"),
		Entry(nil, "checks-missing.yaml", "1:1: ", "missing field checks"),
		Entry(nil, "syntax.yaml", "2:11: ", "YAML syntax"),
		Entry(nil, "two-documents.yaml", "10:1: ", "one scenario per file"),
		Entry(nil, "seed-overflow.yaml", "2:1: seed: ", "too large"),
	)

	It("has a table entry for every broken fixture", func() {
		files, err := filepath.Glob(filepath.Join(fixtures, "broken", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).To(HaveLen(42))
	})

	It("reports several problems of one file together", func() {
		_, err := scenario.Parse("multi.yaml", []byte(`service: chat
duration: 30s
roles:
  - {name: a, count: 0, behaviour: chatter}
  - {name: a, count: 1, behaviour: lurker}
checks: []
`))
		Expect(err).To(MatchError(And(
			ContainSubstring("multi.yaml:4:"), ContainSubstring("roles[0].count: must be between"),
			ContainSubstring("multi.yaml:5:"), ContainSubstring(`roles[1].name: duplicate role name "a"`))))
	})

	It("rejects an empty file", func() {
		_, err := scenario.Parse("empty.yaml", []byte("# nothing\n"))
		Expect(err).To(MatchError(ContainSubstring("empty.yaml: file is empty")))
	})

	It("parses a full chat file with rates, scopes, params, faults and checks", func() {
		s, err := parseFixture("good/chat.yaml")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.File).To(Equal(filepath.Join(fixtures, "good/chat.yaml")))
		Expect(s.Name).To(Equal("chat-good"))
		Expect(s.Description).To(Equal("Honest chatters beside flooders, with faults.\n"))
		Expect(s.Service).To(Equal(scenario.Chat))
		Expect(s.Seed).To(Equal(int64(42)))
		Expect(s.Duration).To(Equal(30 * time.Second))
		Expect(s.Ramp).To(Equal(5 * time.Second))
		Expect(s.Settle).To(Equal(3 * time.Second))
		Expect(s.StreamsPerConn).To(Equal(4))
		Expect(s.Clients()).To(Equal(60))

		Expect(s.Roles).To(HaveLen(4))
		honest, lurkers, flooder, resumer := s.Roles[0], s.Roles[1], s.Roles[2], s.Roles[3]
		Expect(honest.Rate).To(Equal(2.0))
		Expect(honest.Scopes).To(Equal(10))
		Expect(honest.ScopePrefix).To(Equal("room"))
		Expect(honest.Params).To(Equal(&engine.ChatterParams{BodyBytes: 64, RoomsPerClient: 2}))
		Expect(lurkers.Rate).To(BeZero(), "lurker's default rate")
		Expect(lurkers.ScopePrefix).To(Equal("lobby"))
		Expect(lurkers.Start).To(Equal(2 * time.Second))
		Expect(lurkers.Stop).To(Equal(20 * time.Second))
		Expect(lurkers.Params).To(Equal(&engine.LurkerParams{RoomsPerClient: 1}))
		Expect(flooder.Rate).To(Equal(2.0), "120/m")
		Expect(flooder.Scopes).To(Equal(1), "default scope count")
		Expect(flooder.Params).To(Equal(&engine.FlooderParams{BodyBytes: 32}))
		Expect(resumer.Rate).To(Equal(0.5))
		Expect(resumer.Params).To(Equal(&engine.ResumerParams{BodyBytes: 32, RoomsPerClient: 1, ReconnectEvery: 2 * time.Second, Offline: 500 * time.Millisecond}))

		Expect(s.Faults).To(HaveLen(3))
		f := s.Faults[0]
		Expect(f.Fault).To(Equal("test-stream-fault"))
		Expect(f.Scope).To(Equal(fault.Stream))
		Expect(f.At).To(Equal(10 * time.Second))
		Expect(f.Every).To(Equal(5 * time.Second))
		Expect(f.Until).To(Equal(25 * time.Second))
		Expect(f.Roles).To(Equal([]string{"honest", "resumer"}))
		Expect(f.Fraction).To(Equal(0.3))
		Expect(f.Probability).To(Equal(0.5))
		Expect(f.Line).To(Equal(38))
		Expect(s.Faults[1].Scope).To(Equal(fault.Connection))
		Expect(s.Faults[1].Probability).To(Equal(1.0), "default probability")
		Expect(s.Faults[2].Count).To(Equal(3))

		Expect(s.Checks).To(HaveLen(3))
		Expect([]string{s.Checks[0].Name, s.Checks[1].Name, s.Checks[2].Name}).To(Equal([]string{"test-check", "test-check", "test-bare-check"}))
		Expect(s.Checks[1].Line).To(Equal(54))
	})

	It("parses a collab file: documents, defaults, a rate per 10s and a trace path relative to the file", func() {
		s, err := parseFixture("good/collab.yaml")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Name).To(Equal("collab"), "name defaults to the file name")
		Expect(s.Seed).To(Equal(scenario.DefaultSeed))
		Expect(s.Settle).To(Equal(scenario.DefaultSettle))
		Expect(s.StreamsPerConn).To(Equal(1))
		Expect(s.Ramp).To(BeZero())
		Expect(s.Checks).To(BeEmpty())
		r := s.Roles[0]
		Expect(r.Scopes).To(Equal(2))
		Expect(r.ScopePrefix).To(Equal("doc"))
		Expect(r.Rate).To(BeNumerically("~", 0.1, 1e-12))
		Expect(r.Params).To(Equal(&engine.EditorParams{
			Trace: filepath.Join(fixtures, "good", "traces", "tiny.json"), MaxInsert: 8, DeleteRatio: 0.5}))
	})

	It("parses a game file: matches and the behaviour's default rate", func() {
		s, err := parseFixture("good/game.yaml")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Roles[0].Scopes).To(Equal(2))
		Expect(s.Roles[0].ScopePrefix).To(Equal("match"))
		Expect(s.Roles[0].Rate).To(Equal(mustBehaviour("player").DefaultRate))
		Expect(s.Roles[0].Params).To(Equal(&engine.PlayerParams{StepFraction: 0.8}))
		Expect(s.Roles[1].Params).To(Equal(&engine.OversizeParams{Bytes: 1000}))
	})

	DescribeTable("reads rates",
		func(rate string, perSecond float64) {
			s, err := scenario.Parse("rate.yaml", []byte(`service: chat
duration: 30s
roles: [{name: a, count: 1, behaviour: chatter, rate: `+rate+`}]
checks: []
`))
			Expect(err).NotTo(HaveOccurred())
			Expect(s.Roles[0].Rate).To(BeNumerically("~", perSecond, 1e-9))
		},
		Entry(nil, "3", 3.0),
		Entry(nil, "0.25", 0.25),
		Entry(nil, "2/s", 2.0),
		Entry(nil, "120/m", 2.0),
		Entry(nil, "30/min", 0.5),
		Entry(nil, "3600/h", 1.0),
		Entry(nil, "1/500ms", 2.0),
	)
})

var _ = Describe("Load", func() {
	It("reads every *.yaml in a folder, recursively and sorted", func() {
		ss, err := scenario.Load(filepath.Join(fixtures, "good"))
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, s := range ss {
			names = append(names, s.Name)
		}
		Expect(names).To(Equal([]string{"chat-good", "collab", "game-good"}))
	})

	It("reads a file named twice once, and files and folders together", func() {
		ss, err := scenario.Load(filepath.Join(fixtures, "good"), filepath.Join(fixtures, "good", "game.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(ss).To(HaveLen(3))
	})

	It("names a folder without scenario files", func() {
		dir := GinkgoT().TempDir()
		_, err := scenario.Load(dir)
		Expect(err).To(MatchError(ContainSubstring("scenario folder " + dir + ": no scenario files")))
	})

	It("names a missing path", func() {
		_, err := scenario.Load(filepath.Join(fixtures, "nope"))
		Expect(err).To(MatchError(ContainSubstring("nope")))
	})

	It("reports every broken file, and nothing on any error", func() {
		ss, err := scenario.Load(filepath.Join(fixtures, "broken"))
		Expect(ss).To(BeNil())
		Expect(err).To(MatchError(And(ContainSubstring("count-zero.yaml:5:5"), ContainSubstring("unknown-field.yaml:8:5"))))
	})

	It("rejects two files with the same scenario name", func() {
		dir := GinkgoT().TempDir()
		body := "name: same\nservice: chat\nduration: 5s\nroles: [{name: a, count: 1, behaviour: lurker}]\nchecks: []\n"
		Expect(os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(body), 0o600)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, "b.yml"), []byte(body), 0o600)).To(Succeed())
		_, err := scenario.Load(dir)
		Expect(err).To(MatchError(And(ContainSubstring("b.yml:1:1: name:"), ContainSubstring(`"same" is already used by `))))
	})
})

// mustBehaviour returns the behaviour registered under name (the engine
// registers them).
func mustBehaviour(name string) scenario.Behaviour {
	GinkgoHelper()
	b, ok := scenario.LookupBehaviour(name)
	Expect(ok).To(BeTrue(), "behaviour %q is not registered", name)
	return b
}
