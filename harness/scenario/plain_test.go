package scenario_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	_ "github.com/bidikit/bidikit/harness/engine/custom" // custom scenarios' behaviours
	"github.com/bidikit/bidikit/harness/scenario"
)

// notPlain lists where v holds something that is not plain data: a func,
// a channel, an unsafe pointer, or a YAML node of the parse. A Scenario is
// data (issue #15): it can be encoded, compared and copied.
func notPlain(v reflect.Value, path string, seen map[uintptr]bool, out *[]string) {
	if !v.IsValid() {
		return
	}
	if pkg := v.Type().PkgPath(); strings.Contains(pkg, "goccy/go-yaml") {
		*out = append(*out, fmt.Sprintf("%s: %s (a YAML node)", path, v.Type()))
		return
	}
	switch v.Kind() {
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		if !v.IsNil() {
			*out = append(*out, fmt.Sprintf("%s: %s", path, v.Type()))
		}
	case reflect.Pointer:
		if v.IsNil() || seen[v.Pointer()] {
			return
		}
		seen[v.Pointer()] = true
		notPlain(v.Elem(), path, seen, out)
	case reflect.Interface:
		if !v.IsNil() {
			notPlain(v.Elem(), path, seen, out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			notPlain(v.Field(i), path+"."+v.Type().Field(i).Name, seen, out)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			notPlain(v.Index(i), fmt.Sprintf("%s[%d]", path, i), seen, out)
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			notPlain(it.Value(), fmt.Sprintf("%s[%v]", path, it.Key()), seen, out)
		}
	}
}

var _ = Describe("a parsed scenario is plain data", func() {
	It("holds no func, channel or YAML node, in any fixture or shipped scenario", func() {
		var all []*scenario.Scenario
		for _, rel := range []string{"good/chat.yaml", "good/collab.yaml", "good/game.yaml"} {
			s, err := parseFixture(rel)
			Expect(err).NotTo(HaveOccurred())
			all = append(all, s)
		}
		shipped, err := scenario.Load(filepath.Join("..", "..", "scenarios"))
		Expect(err).NotTo(HaveOccurred())
		Expect(len(shipped)).To(BeNumerically(">", 10), "the shipped scenarios were found")
		all = append(all, shipped...)
		faults, checks, params, protocols := 0, 0, 0, 0
		for _, s := range all {
			if s.Protocol != nil {
				protocols++
			}
			var bad []string
			notPlain(reflect.ValueOf(s), s.File, map[uintptr]bool{}, &bad)
			Expect(bad).To(BeEmpty(), "%s holds values that are not data", s.File)
			faults += len(s.Faults)
			checks += len(s.Checks)
			for _, c := range s.Checks {
				if c.Params.Given() {
					params++
				}
			}
		}
		Expect(faults).To(BeNumerically(">", 0), "the walk saw fault steps")
		Expect(params).To(BeNumerically(">", 0), "the walk saw checks with params")
		Expect(protocols).To(BeNumerically(">", 0), "the walk saw a custom protocol")
		Expect(checks).To(BeNumerically(">", faults))
	})

	It("the walk finds a func when there is one", func() {
		var bad []string
		v := struct {
			A []any
			B map[string]func()
		}{A: []any{1, func() {}}, B: map[string]func(){"x": func() {}}}
		notPlain(reflect.ValueOf(&v), "v", map[uintptr]bool{}, &bad)
		Expect(bad).To(ConsistOf("v.A[1]: func()", "v.B[x]: func()"))
	})

	It("parses to equal values twice, and its specs survive a JSON round trip", func() {
		a, err := parseFixture("good/chat.yaml")
		Expect(err).NotTo(HaveOccurred())
		b, err := parseFixture("good/chat.yaml")
		Expect(err).NotTo(HaveOccurred())
		Expect(reflect.DeepEqual(a, b)).To(BeTrue(), "two parses of one file differ")

		data, err := json.Marshal(struct {
			F []scenario.FaultStep
			C []scenario.CheckSpec
		}{a.Faults, a.Checks})
		Expect(err).NotTo(HaveOccurred())
		var back struct {
			F []scenario.FaultStep
			C []scenario.CheckSpec
		}
		Expect(json.Unmarshal(data, &back)).To(Succeed())
		Expect(back.F).To(Equal(a.Faults))
		Expect(back.C).To(Equal(a.Checks))
		f, err := back.F[0].New()
		Expect(err).NotTo(HaveOccurred())
		Expect(f.(fakeFault).params).To(Equal(&fakeFaultParams{N: 7}))
	})

	It("builds fresh, independent faults and checkers on every New, with decoded params and defaults", func() {
		s, err := parseFixture("good/chat.yaml")
		Expect(err).NotTo(HaveOccurred())
		a, err := s.Faults[0].New()
		Expect(err).NotTo(HaveOccurred())
		b, err := s.Faults[0].New()
		Expect(err).NotTo(HaveOccurred())
		Expect(a.(fakeFault).params).To(Equal(&fakeFaultParams{N: 7}))
		Expect(a.(fakeFault).params).NotTo(BeIdenticalTo(b.(fakeFault).params))
		a.(fakeFault).params.N = 99
		Expect(b.(fakeFault).params.N).To(Equal(7), "changing one fault changed the other")

		c1, err := s.Checks[1].New()
		Expect(err).NotTo(HaveOccurred())
		c2, err := s.Checks[1].New()
		Expect(err).NotTo(HaveOccurred())
		Expect(c1.(fakeChecker).params).To(Equal(&fakeCheckParams{Threshold: 0.9, Window: 10 * time.Second}))
		Expect(c1.(fakeChecker).params).NotTo(BeIdenticalTo(c2.(fakeChecker).params))
		c1.(fakeChecker).params.Threshold = 0.1
		Expect(c2.(fakeChecker).params.Threshold).To(Equal(0.9), "changing one checker changed the other")
		c0, err := s.Checks[0].New()
		Expect(err).NotTo(HaveOccurred())
		Expect(c0.(fakeChecker).params).To(Equal(&fakeCheckParams{Threshold: 0.5, Window: time.Second}), "bare name: defaults")

		copied := *s
		copied.Checks = append([]scenario.CheckSpec(nil), s.Checks...)
		c3, err := copied.Checks[1].New()
		Expect(err).NotTo(HaveOccurred())
		Expect(c3.(fakeChecker).params).To(Equal(&fakeCheckParams{Threshold: 0.9, Window: 10 * time.Second}), "a copy builds the same")
	})

	It("reports a bad param kept in a spec at its file position when built", func() {
		s, err := parseFixture("good/chat.yaml")
		Expect(err).NotTo(HaveOccurred())
		cs := s.Checks[1]
		cs.Params.YAML = strings.Replace(cs.Params.YAML, "threshold", "thresold", 1)
		_, err = cs.New()
		Expect(err).To(MatchError(And(ContainSubstring(".yaml:"), ContainSubstring(`unknown field "thresold"; did you mean "threshold"?`))))
	})
})
