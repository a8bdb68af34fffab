package strictyaml_test

import (
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/internal/strictyaml"
)

type config struct {
	Name    string         `yaml:"name"`
	Count   int            `yaml:"count"`
	Every   time.Duration  `yaml:"every"`
	Rooms   map[string]int `yaml:"rooms"`
	Enabled bool           `yaml:"enabled"`
}

var _ = Describe("Decode", func() {
	It("decodes a well-formed file", func() {
		var c config
		Expect(strictyaml.Decode("c.yaml", []byte("name: x\ncount: 3\nevery: 2s\nrooms: {a: 1}\nenabled: true\n"), &c)).To(Succeed())
		Expect(c).To(Equal(config{Name: "x", Count: 3, Every: 2 * time.Second, Rooms: map[string]int{"a": 1}, Enabled: true}))
	})

	It("leaves defaults alone for an empty file", func() {
		c := config{Count: 7}
		Expect(strictyaml.Decode("c.yaml", nil, &c)).To(Succeed())
		Expect(c.Count).To(Equal(7))
	})

	DescribeTable("names file, line, column and field of every problem",
		func(text string, want ...string) {
			var c config
			err := strictyaml.Decode("c.yaml", []byte(text), &c)
			Expect(err).To(HaveOccurred())
			var e *strictyaml.Error
			Expect(errors.As(err, &e)).To(BeTrue(), "not a *strictyaml.Error: %v", err)
			for _, w := range want {
				Expect(err.Error()).To(ContainSubstring(w))
			}
		},
		Entry("a misspelt key", "name: x\ncuont: 3\n", `c.yaml:2:1: cuont: unknown field "cuont"; did you mean "count"?`),
		Entry("a fraction for a whole number", "count: 2.5\n", "c.yaml:1:1: count: must be a whole number, not 2.5"),
		Entry("a duration without a unit", "every: 30\n", "c.yaml:1:1: every: must be a duration with a unit"),
		Entry("text for a boolean", "enabled: yes please\n", "enabled: must be true or false"),
		Entry("a list for a mapping", "rooms: [a]\n", "rooms: must be a mapping"),
		Entry("two problems at once", "cuont: 1\nevery: 3\n", "cuont", "every"),
		Entry("a second document", "name: a\n---\nname: b\n", "c.yaml:3:1: one document per file"),
		Entry("broken syntax", "name: [\n", "c.yaml:", "YAML syntax"),
	)
})
