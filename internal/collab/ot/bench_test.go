package ot_test

import (
	"testing"

	"github.com/bidikit/bidikit/internal/collab/ot"
	"github.com/bidikit/bidikit/internal/collab/trace"
)

// BenchmarkAutomergePaperRope applies the whole automerge-paper trace
// (259,778 single-character edits) to a Rope, building each edit as an Op
// and applying it the way the service does. Target: <= 250 ms per op
// reported (one b.N iteration is the whole trace).
func BenchmarkAutomergePaperRope(b *testing.B) {
	path, err := trace.Path("automerge-paper.json.gz")
	if err != nil {
		b.Fatal("fixture missing: the automerge-paper editing trace (testdata/traces/automerge-paper.json.gz): " + err.Error())
	}
	tr, err := trace.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rope := ot.NewRope(tr.StartContent)
		for _, x := range tr.Txns {
			for _, p := range x.Patches {
				o, err := ot.Splice(rope.Len(), p.Pos, p.Del, p.Ins)
				if err != nil {
					b.Fatal(err)
				}
				if err := rope.Apply(o); err != nil {
					b.Fatal(err)
				}
			}
		}
		if rope.Len() != len([]rune(tr.EndContent)) {
			b.Fatalf("ended with %d code points, want %d", rope.Len(), len([]rune(tr.EndContent)))
		}
	}
}
