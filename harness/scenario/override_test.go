package scenario_test

import (
	"errors"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/scenario"
)

// blockYAML is a scenario in block style; flowYAML one in flow style, with a
// fault, a bare check and checks with parameters.
const (
	blockYAML = `# a comment
name: blk
service: chat
duration: 10s
roles:
  - name: chatter
    count: 16
    behaviour: chatter
    rooms: 4
    rate: 5/s
    params:
      rooms_per_client: 2
  - name: resumer
    count: 2
    behaviour: resumer
    rooms: 4
    rate: 2/s
    params:
      reconnect_every: 3s
checks:
  - total-order
  - leaks: { settle: 10s }
`
	flowYAML = `name: flw
service: chat
duration: 20s
roles:
  - {name: honest, count: 5, behaviour: chatter, rooms: 2, rate: 2/s}
  - {name: flooder, count: 1, behaviour: flooder, rooms: 2, rate: 200/s, start: 8s}
faults:
  - {fault: abrupt-close, at: 12s, fraction: 0.3, roles: [honest]}
checks:
  - total-order
  - leaks
  - fairness: {honest: honest, attackers: flooder}
`
)

// apply parses the --set arguments and applies them to data; it also
// checks that the YAML returned reads back to the same scenario.
func apply(data string, sets ...string) (*scenario.Scenario, error) {
	var os []scenario.Override
	for _, s := range sets {
		o, err := scenario.ParseOverride(s)
		if err != nil {
			return nil, err
		}
		os = append(os, o)
	}
	s, err := scenario.Apply("f.yaml", []byte(data), os)
	if err != nil {
		return nil, err
	}
	again, err := scenario.Parse("f.yaml", s.Source)
	Expect(err).NotTo(HaveOccurred(), "the YAML returned:\n%s", s.Source)
	Expect(again.Duration).To(Equal(s.Duration))
	Expect(again.Roles).To(Equal(s.Roles))
	Expect(again.Faults).To(HaveLen(len(s.Faults)))
	for i, f := range s.Faults { // (New is a func; Line may differ from the file's)
		g := again.Faults[i]
		Expect([]any{g.Fault, g.At, g.Every, g.Until, g.Roles, g.Fraction, g.Count, g.Probability}).To(
			Equal([]any{f.Fault, f.At, f.Every, f.Until, f.Roles, f.Fraction, f.Count, f.Probability}))
	}
	Expect(len(again.Checks)).To(Equal(len(s.Checks)))
	return s, nil
}

func roleNamed(s *scenario.Scenario, name string) scenario.Role {
	for _, r := range s.Roles {
		if r.Name == name {
			return r
		}
	}
	Fail("no role " + name)
	return scenario.Role{}
}

func checkNames(s *scenario.Scenario) []string {
	var out []string
	for _, c := range s.Checks {
		out = append(out, c.Name)
	}
	return out
}

var _ = Describe("--set overrides", func() {
	It("changes top-level fields, and adds one the file lacks", func() {
		s, err := apply(blockYAML, "duration=5s", "ramp=1s", "seed=9")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Duration).To(Equal(5 * time.Second))
		Expect(s.Ramp).To(Equal(time.Second))
		Expect(s.Seed).To(BeEquivalentTo(9))
	})

	It("addresses roles by name, or every role with *, in block and flow style", func() {
		s, err := apply(blockYAML, "roles.chatter.count=3", "roles.resumer.start=2s", "roles.chatter.params.rooms_per_client=1")
		Expect(err).NotTo(HaveOccurred())
		Expect(roleNamed(s, "chatter").Count).To(Equal(3))
		Expect(roleNamed(s, "resumer").Start).To(Equal(2 * time.Second))
		Expect(roleNamed(s, "resumer").Count).To(Equal(2))

		s, err = apply(flowYAML, "roles.honest.count=50", "roles.flooder.stop=10s")
		Expect(err).NotTo(HaveOccurred())
		Expect(roleNamed(s, "honest").Count).To(Equal(50))
		Expect(roleNamed(s, "flooder").Stop).To(Equal(10 * time.Second))

		s, err = apply(flowYAML, "roles.*.count=2")
		Expect(err).NotTo(HaveOccurred())
		Expect(roleNamed(s, "honest").Count).To(Equal(2))
		Expect(roleNamed(s, "flooder").Count).To(Equal(2))
	})

	It("addresses faults by index or name, check parameters by the check's name, and thresholds by role", func() {
		s, err := apply(flowYAML, "faults[0].at=3s", "checks.leaks.settle=1s", "checks.fairness.p99_ratio_max=3", "thresholds.honest.p99=50ms")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Faults).To(HaveLen(1))
		Expect(s.Faults[0].At).To(Equal(3 * time.Second))
		Expect(checkNames(s)).To(ContainElement("threshold honest p99 <= 50ms"))

		s, err = apply(flowYAML, "faults.abrupt-close.fraction=0.5")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Faults[0].Fraction).To(Equal(0.5))

		s, err = apply(blockYAML, "checks=[total-order]")
		Expect(err).NotTo(HaveOccurred())
		Expect(checkNames(s)).To(Equal([]string{"total-order"}))
	})

	It("applies overrides in order: the last one wins", func() {
		s, err := apply(blockYAML, "duration=5s", "duration=7s")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Duration).To(Equal(7 * time.Second))
	})

	DescribeTable("refuses a key that names nothing, or a value the file's checks refuse, naming the --set",
		func(data string, set string, msg string) {
			_, err := apply(data, set)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(msg))
			if set != "foo" && set != "roles.honest.rate=" {
				var se *scenario.Error
				Expect(errors.As(err, &se)).To(BeTrue(), "an *Error: %v", err)
			}
		},
		Entry("an unknown role", flowYAML, "roles.nosuch.count=5", `--set roles.nosuch.count=5: no role "nosuch" (roles: honest, flooder)`),
		Entry("a role's name misspelt", flowYAML, "roles.honset.count=5", `no role "honset"; did you mean "honest"?`),
		Entry("a bad value, with the file's message", flowYAML, "roles.honest.count=abc", `--set roles.honest.count=abc: roles[0].count: must be a whole number`),
		Entry("an unknown field, with a guess", flowYAML, "durration=1s", `--set durration=1s: durration: unknown field "durration"; did you mean "duration"?`),
		Entry("an unknown role field", blockYAML, "roles.chatter.cuont=1", `--set roles.chatter.cuont=1: roles[0].cuont: unknown field "cuont"; did you mean "count"?`),
		Entry("a field below a plain value", flowYAML, "roles.honest.count.x=1", `roles[0].count is 5, not a mapping`),
		Entry("an index past the list's end", flowYAML, "faults[5].at=1s", `faults has 1 entries (faults[0]..faults[0]): there is no [5]`),
		Entry("a fault not in the file", flowYAML, "faults.cancel.at=1s", `no fault "cancel" (faults: [0] abrupt-close)`),
		Entry("a check not in the file", flowYAML, "checks.no-gaps.x=1", `no check "no-gaps" in checks`),
		Entry("a parameter of a check that takes none", flowYAML, "checks.total-order.x=1", `checks[0].total-order.x: unknown field "x": this takes no parameters`),
		Entry("a threshold for an unknown role", flowYAML, "thresholds.nobody.p99=5ms", `--set thresholds.nobody.p99=5ms: thresholds.nobody: unknown role "nobody"`),
		Entry("no =", flowYAML, "foo", `--set foo: want KEY=VALUE`),
		Entry("an empty value", flowYAML, "roles.honest.rate=", `the value is empty`),
		Entry("a fault made to fall after the run's end", flowYAML, "faults[0].at=30s", `--set faults[0].at=30s: faults[0].at: 30s is not before the end of the run (duration 20s)`),
	)

	It("names the overrides in a problem they caused elsewhere in the file, at the file's position", func() {
		_, err := apply(flowYAML, "duration=5s")
		Expect(err).To(MatchError(ContainSubstring("f.yaml:8:27: faults[0].at: 12s is not before the end of the run (duration 5s) (with --set duration=5s)")))
	})

	It("keeps the file's line numbers in the scenario when a key is added above them", func() {
		data := blockYAML + "faults:\n  - fault: abrupt-close\n    at: 5s\n    fraction: 0.5\n"
		line := 0
		for i, l := range strings.Split(data, "\n") {
			if strings.HasPrefix(l, "  - fault:") {
				line = i + 1
			}
		}
		s, err := apply(data, "roles.chatter.start=1s")
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Faults[0].Line).To(Equal(line))
	})

	It("returns the file itself when there is no override", func() {
		s, err := scenario.Apply("f.yaml", []byte(blockYAML), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(s.Source)).To(Equal(blockYAML))
		Expect(s.Name).To(Equal("blk"))
	})
})
