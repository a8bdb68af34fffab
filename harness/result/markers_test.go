package result_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
)

var _ = Describe("markers", func() {
	It("marks each failed check at its earliest evidence, else when it was first seen, else at the end", func() {
		s := result.Scenario{DurationS: 10,
			Markers: []result.Marker{{AtS: 5, Kind: result.MarkFault, Label: "cancel"}},
			Checks: []check.Verdict{
				{Name: "total-order", Status: check.Pass},
				{Name: "no-gaps", Status: check.Fail, Violations: 3, Summary: "3 gaps", Evidence: []check.Evidence{
					{Scope: "room-1", Seq: 9, At: 7 * time.Second, Detail: "seq 9 missing"},
					{Scope: "room-2", Seq: 4, Client: "honest-3", At: 3 * time.Second, Detail: "seq 4 missing"},
					{Scope: "room-2", Seq: 5, Detail: "seq 5 missing"},
				}},
				{Name: "leaks", Status: check.NotMeasurable, Summary: "no admin endpoint"},
				{Name: "fairness", Status: check.Fail, Violations: 1, Summary: "honest errors", Evidence: []check.Evidence{{Detail: "no time"}}},
				{Name: "no-lost-acks", Status: check.Fail, Violations: 1, Summary: "1 lost"},
			},
		}
		s.MarkViolations([]time.Duration{0, 0, 0, 2 * time.Second, 0})
		Expect(s.Markers).To(Equal([]result.Marker{
			{AtS: 2, Kind: result.MarkViolation, Label: "fairness",
				Detail: "first seen while the run went on; 1 violation: honest errors — no time"},
			{AtS: 3, Kind: result.MarkViolation, Label: "no-gaps",
				Detail: "3 violations: 3 gaps — scope=room-2 seq=4 client=honest-3 seq 4 missing"},
			{AtS: 5, Kind: result.MarkFault, Label: "cancel"},
			{AtS: 10, Kind: result.MarkViolation, Label: "no-lost-acks",
				Detail: "time not known: judged at the end of the run; 1 violation: 1 lost"},
		}))
		Expect(result.MarkersOf(s.Markers, result.MarkViolation)).To(HaveLen(3))
	})
})
