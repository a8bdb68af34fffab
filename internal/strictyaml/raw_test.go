package strictyaml_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/internal/strictyaml"
)

type fairness struct {
	Honest  string        `yaml:"honest"`
	JainMin float64       `yaml:"jain_min"`
	Settle  time.Duration `yaml:"settle"`
	Roles   []struct {
		Name string `yaml:"name"`
	} `yaml:"roles"`
}

// paramsNode parses src and returns the value of its first key's first key
// (the params of one check in a `checks:`-like list).
func paramsNode(src string) ast.Node {
	f, err := parser.ParseBytes([]byte(src), 0)
	Expect(err).NotTo(HaveOccurred())
	top, ok := strictyaml.MapPairs(f.Docs[0].Body)
	Expect(ok).To(BeTrue())
	inner, ok := strictyaml.MapPairs(strictyaml.Unwrap(top[0].Value))
	Expect(ok).To(BeTrue())
	return inner[0].Value
}

var _ = Describe("Raw", func() {
	const src = "checks:\n  fairness:\n    honest: a\n    jain_min: 0.9\n    settle: 2s\n    roles:\n      - name: x\n      - {name: y}\n"

	It("decodes later exactly what the node decoded, and is plain data", func() {
		node := paramsNode(src)
		var want fairness
		Expect(strictyaml.Decoder("f.yaml", node, "checks.fairness", nil)(&want)).To(Succeed())
		r, err := strictyaml.RawOf("f.yaml", node, "checks.fairness")
		Expect(err).NotTo(HaveOccurred())
		Expect(r.Given()).To(BeTrue())
		Expect(r.Line).To(Equal(3))
		var got fairness
		Expect(r.Decode(&got)).To(Succeed())
		Expect(got).To(Equal(want))
		Expect(got.Roles).To(HaveLen(2))

		again, err := strictyaml.RawOf("f.yaml", paramsNode(src), "checks.fairness")
		Expect(err).NotTo(HaveOccurred())
		Expect(reflect.DeepEqual(r, again)).To(BeTrue(), "two parses of one file keep equal values")
		b, err := json.Marshal(r)
		Expect(err).NotTo(HaveOccurred())
		var back strictyaml.Raw
		Expect(json.Unmarshal(b, &back)).To(Succeed())
		Expect(back).To(Equal(r))
	})

	It("keeps the fields in file order", func() {
		r, err := strictyaml.RawOf("f.yaml", paramsNode("c:\n  f: {z: 1, a: 2}\n"), "c.f")
		Expect(err).NotTo(HaveOccurred())
		Expect(r.YAML).To(Equal("z: 1\na: 2\n"))
	})

	DescribeTable("reports a problem where the field was written, as the node's decoder does",
		func(text string, want string) {
			node := paramsNode(text)
			var viaNode fairness
			nodeErr := strictyaml.Decoder("f.yaml", node, "c.f", nil)(&viaNode)
			Expect(nodeErr).To(MatchError(ContainSubstring(want)))
			r, err := strictyaml.RawOf("f.yaml", node, "c.f")
			Expect(err).NotTo(HaveOccurred())
			var viaRaw fairness
			rawErr := r.Decode(&viaRaw)
			var e *strictyaml.Error
			Expect(errors.As(rawErr, &e)).To(BeTrue(), "not a *strictyaml.Error: %v", rawErr)
			Expect(rawErr.Error()).To(Equal(nodeErr.Error()))
		},
		Entry("a misspelt key", "c:\n  f:\n    honest: a\n    jian_min: 1\n", `f.yaml:4:5: c.f.jian_min: unknown field "jian_min"; did you mean "jain_min"?`),
		Entry("a unitless duration", "c:\n  f:\n    settle: 3\n", "f.yaml:3:5: c.f.settle: must be a duration with a unit"),
		Entry("deep in a flow list", "c:\n  f: {roles: [{name: x}, {nmae: y}]}\n", `f.yaml:2:27: c.f.roles[1].nmae: unknown field "nmae"; did you mean "name"?`),
		Entry("text for a number", "c:\n  f:\n    jain_min: high\n", `f.yaml:3:5: c.f.jain_min: must be a finite number, not "high"`),
	)

	It("leaves defaults alone when no value was given", func() {
		for _, r := range []strictyaml.Raw{{}, mustRaw("c:\n  f:\n")} {
			got := fairness{JainMin: 0.5}
			Expect(r.Given()).To(BeFalse())
			Expect(r.Decode(&got)).To(Succeed())
			Expect(got.JainMin).To(Equal(0.5))
		}
	})

	It("refuses a target that is not a pointer", func() {
		r := mustRaw("c:\n  f: {honest: a}\n")
		Expect(r.Decode(fairness{})).To(MatchError(ContainSubstring("non-nil pointer")))
	})
})

func mustRaw(src string) strictyaml.Raw {
	r, err := strictyaml.RawOf("f.yaml", paramsNode(src), "c.f")
	Expect(err).NotTo(HaveOccurred())
	return r
}
