package report_test

import (
	"encoding/json"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("json markers and role timelines", func() {
	It("carries each scenario's markers and each role's timeline", func() {
		var doc struct {
			Scenarios []struct {
				Markers []map[string]any `json:"markers"`
				Roles   []struct {
					Name     string           `json:"name"`
					Timeline []map[string]any `json:"timeline"`
				} `json:"roles"`
			} `json:"scenarios"`
		}
		Expect(json.Unmarshal([]byte(renderRun("json", markedRun())), &doc)).To(Succeed())
		s := doc.Scenarios[0]
		Expect(s.Markers).To(HaveLen(5))
		Expect(s.Markers[2]).To(Equal(map[string]any{"at_s": 4.05, "kind": "violation", "label": "no-gaps",
			"detail": `2 violations: 2 gaps — scope=room-<1> seq=7 "missing"`}))
		Expect(s.Roles[0].Timeline).To(HaveLen(10))
		Expect(s.Roles[0].Timeline[0]).To(HaveKeyWithValue("p99_ms", 4.5))
		Expect(doc.Scenarios[1].Markers).NotTo(BeNil(), "[] rather than null")
		Expect(doc.Scenarios[1].Markers).To(BeEmpty())
	})
})
