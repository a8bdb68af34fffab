package engine

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("a collab stream's version track", func() {
	It("tells the next version, a skip, a late first arrival and a repeat apart", func() {
		var t versionTrack
		t.reset(10) // Opened at version 10
		how, want := t.see(11)
		Expect(how).To(Equal(inOrder))
		Expect(want).To(BeEquivalentTo(11))
		how, want = t.see(14) // 12 and 13 missing
		Expect(how).To(Equal(skipped))
		Expect(want).To(BeEquivalentTo(12))
		how, _ = t.see(13) // late, first time
		Expect(how).To(Equal(late))
		how, _ = t.see(13) // now a repeat
		Expect(how).To(Equal(repeated))
		how, _ = t.see(10) // covered by the snapshot
		Expect(how).To(Equal(repeated))
		how, want = t.see(15)
		Expect(how).To(Equal(inOrder))
		Expect(want).To(BeEquivalentTo(15))
		how, _ = t.see(12)
		Expect(how).To(Equal(late))
	})
	It("remembers a bounded number of skipped versions, however far a version jumps", func() {
		var t versionTrack
		t.reset(0)
		how, _ := t.see(1 << 40)
		Expect(how).To(Equal(skipped))
		Expect(t.holes).To(HaveLen(maxHoles))
		t.reset(5)
		Expect(t.holes).To(BeEmpty())
		Expect(t.top).To(BeEquivalentTo(5))
	})
})
