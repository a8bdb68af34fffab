package generic_test

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/bench/generic"
)

// ghzConfigFile writes text to a .json file in a fresh folder.
func ghzConfigFile(text string) string {
	p := filepath.Join(GinkgoT().TempDir(), "ghz.json")
	Expect(os.WriteFile(p, []byte(text), 0o600)).To(Succeed())
	return p
}

var _ = Describe("LoadGhzConfig", func() {
	It("reads ghz's field names into a Config", func() {
		path := ghzConfigFile(`{
  "call": "grpc.testing.TestService/FullDuplexCall",
  "host": "127.0.0.1:50051",
  "insecure": true,
  "total": 200,
  "concurrency": 20,
  "connections": 2,
  "stream-call-count": 10,
  "data": [{"payload": {"body": "AA=="}}, {}],
  "metadata": {"x-tenant": "a"},
  "connect-timeout": "3s",
  "format": "json",
  "output": "out.json",
  "name": "nightly",
  "tags": {"env": "ci"},
  "async": false,
  "rps": 0
}`)
		settings, err := generic.LoadGhzConfig(path)
		Expect(err).NotTo(HaveOccurred())
		var c generic.Config
		for _, s := range settings {
			s.Apply(&c)
		}
		Expect(c.Call).To(Equal("grpc.testing.TestService/FullDuplexCall"))
		Expect(c.Target).To(Equal("127.0.0.1:50051"))
		Expect(c.Insecure).To(BeTrue())
		Expect(c.Total).To(Equal(uint(200)))
		Expect(c.Concurrency).To(Equal(uint(20)))
		Expect(c.Connections).To(Equal(uint(2)))
		Expect(c.StreamCallCount).To(Equal(uint(10)))
		Expect(c.Data).To(Equal(`[{"payload":{"body":"AA=="}},{}]`))
		Expect(c.Metadata).To(MatchJSON(`{"x-tenant":"a"}`))
		Expect(c.DialTimeout).To(Equal(3 * time.Second))
		Expect(c.Format).To(Equal("json"))
		Expect(c.Output).To(Equal("out.json"))
		Expect(c.Name).To(Equal("nightly"))
		Expect(c.Tags).To(HaveKeyWithValue("env", "ci"))
		Expect(settings[0].Pos).To(Equal(path + ":2:3"))
		Expect(settings[1].Flags).To(ContainElement("target"))
	})

	DescribeTable("refuses what it cannot read, naming the file, line, column and field",
		func(text, want string) {
			path := ghzConfigFile(text)
			_, err := generic.LoadGhzConfig(path)
			Expect(errors.Is(err, generic.ErrUsage)).To(BeTrue(), "error %v", err)
			Expect(err).To(MatchError(ContainSubstring(path)))
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("an unknown field", "{\n  \"concurency\": 5\n}", `ghz.json:2:3: unknown field "concurency"; did you mean "concurrency"?`),
		Entry("a field of the wrong type", `{"concurrency": "five"}`, `ghz.json:1:2: field "concurrency": want a whole number >= 0, got "five"`),
		Entry("a duration without a unit", `{"duration": 10}`, `field "duration": want a duration string like "10s", got 10`),
		Entry("ghz's rps", "{\"call\": \"a.B/C\",\n \"rps\": 100}", `ghz.json:2:2: field "rps" is not supported by bidikit bench: ghz's rps paces calls; bidikit paces messages per stream: use --rate`),
		Entry("duration-stop close", `{"duration-stop": "close"}`, `field "duration-stop": bidikit's rounds always stop new calls and wait`),
		Entry("data that is not messages", `{"data": [1, 2]}`, `field "data": want an object or a non-empty array of objects`),
		Entry("a field twice", `{"total": 1, "total": 2}`, `field "total" again`),
		Entry("total and duration", `{"total": 10, "duration": "5s"}`, `field "total" (10 calls) and field "duration"`),
		Entry("not an object", `[1]`, "a ghz config is one JSON object"),
		Entry("a syntax error", "{\n  \"total\": 1,\n}", "ghz.json:3:"),
	)

	It("refuses TOML and YAML configs and a missing file", func() {
		_, err := generic.LoadGhzConfig("ghz.toml")
		Expect(err).To(MatchError(ContainSubstring("bidikit reads ghz's JSON config only")))
		_, err = generic.LoadGhzConfig(filepath.Join(GinkgoT().TempDir(), "none.json"))
		Expect(err).To(MatchError(ContainSubstring("none.json")))
	})
})
