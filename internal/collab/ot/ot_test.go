package ot_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/internal/collab/ot"
	"github.com/bidikit/bidikit/internal/collab/trace"
)

// alphabet mixes ASCII with multi-byte code points so that byte and
// code-point positions differ.
var alphabet = []rune("abcxyz \nédß日本🙂")

func randText(r *rand.Rand, max int) string {
	n := r.IntN(max + 1)
	rs := make([]rune, n)
	for i := range rs {
		rs[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(rs)
}

// randOp returns a random op over a text of n code points.
func randOp(r *rand.Rand, n int) ot.Op {
	var o ot.Op
	left := n
	for left > 0 || r.IntN(3) == 0 {
		switch r.IntN(4) {
		case 0:
			o = o.Insert(randText(r, 4))
		case 1:
			if left > 0 {
				k := 1 + r.IntN(left)
				o = o.Delete(k)
				left -= k
			}
		default:
			if left > 0 {
				k := 1 + r.IntN(left)
				o = o.Retain(k)
				left -= k
			}
		}
		if left == 0 && r.IntN(2) == 0 {
			break
		}
	}
	return o
}

func mustApply(s string, o ot.Op) string {
	out, err := ot.Apply(s, o)
	Expect(err).NotTo(HaveOccurred())
	return out
}

var _ = Describe("Op", func() {
	It("builds normalised ops", func() {
		o := ot.Op{}.Retain(2).Retain(0).Retain(3).Insert("a").Insert("").Insert("é").Delete(1).Delete(2)
		Expect(o).To(Equal(ot.Op{{Kind: ot.Retain, N: 5}, {Kind: ot.Insert, N: 2, Text: "aé"}, {Kind: ot.Delete, N: 3}}))
		Expect(o.BaseLen()).To(Equal(8))
		Expect(o.TargetLen()).To(Equal(7))
		Expect(ot.Normalize(ot.Op{{Kind: ot.Retain, N: 1}, {Kind: ot.Retain, N: 0}, {Kind: ot.Retain, N: 2}})).To(Equal(ot.Op{}.Retain(3)))
	})

	It("applies over code points, not bytes", func() {
		o := ot.Op{}.Retain(1).Delete(1).Insert("🙂").Retain(1)
		Expect(mustApply("日本語", o)).To(Equal("日🙂語"))
	})

	It("names the length mismatch", func() {
		_, err := ot.Apply("0123456789", ot.Op{}.Retain(12))
		Expect(err).To(MatchError("op spans 12 code points but the text has 10"))
		_, err = ot.Apply("日本", ot.Op{}.Retain(6))
		Expect(err).To(MatchError("op spans 6 code points but the text has 2"))
	})

	It("rejects bad shapes in Check", func() {
		Expect(ot.Op{{Kind: ot.Retain, N: 0}}.Check()).To(MatchError(ContainSubstring("must be positive")))
		Expect(ot.Op{{Kind: ot.Insert}}.Check()).To(MatchError(ContainSubstring("empty insert")))
		Expect(ot.Op{{Kind: 9, N: 1}}.Check()).To(MatchError(ContainSubstring("unknown kind")))
		Expect(ot.Op{}.Retain(1).Insert("x").Check()).To(Succeed())
	})

	It("breaks insert ties by side", func() {
		a := ot.Op{}.Retain(1).Insert("A").Retain(1)
		b := ot.Op{}.Retain(1).Insert("B").Retain(1)
		ap, bp, err := ot.Transform(a, b, ot.Left)
		Expect(err).NotTo(HaveOccurred())
		Expect(mustApply(mustApply("xy", a), bp)).To(Equal("xABy"))
		Expect(mustApply(mustApply("xy", b), ap)).To(Equal("xABy"))
		ap, bp, err = ot.Transform(a, b, ot.Right)
		Expect(err).NotTo(HaveOccurred())
		Expect(mustApply(mustApply("xy", a), bp)).To(Equal("xBAy"))
		Expect(mustApply(mustApply("xy", b), ap)).To(Equal("xBAy"))
	})

	It("refuses to transform ops over different lengths", func() {
		_, _, err := ot.Transform(ot.Op{}.Retain(2), ot.Op{}.Retain(3), ot.Left)
		Expect(err).To(MatchError(ContainSubstring("2 and 3 code points")))
	})

	It("transforms cursors", func() {
		o := ot.Op{}.Retain(2).Insert("abc").Retain(3).Delete(2).Retain(1)
		Expect(ot.TransformCursor(0, o)).To(Equal(0))
		Expect(ot.TransformCursor(2, o)).To(Equal(5)) // insert at the cursor pushes it right
		Expect(ot.TransformCursor(5, o)).To(Equal(8))
		Expect(ot.TransformCursor(6, o)).To(Equal(8)) // inside the deleted range
		Expect(ot.TransformCursor(7, o)).To(Equal(8))
		Expect(ot.TransformCursor(8, o)).To(Equal(9))
	})

	It("holds TP1, compose and cursor properties on thousands of seeded cases", func() {
		seed := uint64(time.Now().UnixNano())
		const cases = 20000
		for i := range cases {
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			where := fmt.Sprintf("seed %d case %d", seed, i)
			s := randText(r, 24)
			n := len([]rune(s))
			a, b := randOp(r, n), randOp(r, n)
			side := ot.Side(r.IntN(2))
			ap, bp, err := ot.Transform(a, b, side)
			Expect(err).NotTo(HaveOccurred(), where)
			left := mustApply(mustApply(s, a), bp)
			right := mustApply(mustApply(s, b), ap)
			Expect(left).To(Equal(right), "%s: s=%q a=%v b=%v side=%d", where, s, a, b, side)
			// Compose(a, b') is a then b'.
			c, err := ot.Compose(a, bp)
			Expect(err).NotTo(HaveOccurred(), where)
			Expect(mustApply(s, c)).To(Equal(left), "%s: compose", where)
			// A cursor stays inside the text.
			pos := r.IntN(n + 1)
			Expect(ot.TransformCursor(pos, a)).To(BeNumerically("<=", a.TargetLen()), where)
			Expect(ot.TransformCursor(pos, a)).To(BeNumerically(">=", 0), where)
		}
	})
})

var _ = Describe("Rope", func() {
	It("matches a naive []rune text on random edit sequences", func() {
		seed := uint64(time.Now().UnixNano())
		for c := range 200 {
			r := rand.New(rand.NewPCG(seed, uint64(c)))
			where := fmt.Sprintf("seed %d case %d", seed, c)
			naive := []rune(randText(r, 3000))
			rope := ot.NewRope(string(naive))
			for step := range 300 {
				n := len(naive)
				pos := r.IntN(n + 1)
				switch r.IntN(5) {
				case 0, 1: // typing
					s := randText(r, 3)
					Expect(rope.Insert(pos, s)).To(Succeed())
					naive = append(naive[:pos], append([]rune(s), naive[pos:]...)...)
				case 2: // paste
					s := randText(r, 1500)
					Expect(rope.Insert(pos, s)).To(Succeed())
					naive = append(naive[:pos], append([]rune(s), naive[pos:]...)...)
				default:
					k := r.IntN(n - pos + 1)
					if r.IntN(4) > 0 {
						k = min(k, 3)
					}
					Expect(rope.Delete(pos, k)).To(Succeed())
					naive = append(naive[:pos], naive[pos+k:]...)
				}
				Expect(rope.Len()).To(Equal(len(naive)), "%s step %d", where, step)
				if step%50 == 0 {
					Expect(rope.String()).To(Equal(string(naive)), "%s step %d", where, step)
					from := r.IntN(len(naive) + 1)
					to := from + r.IntN(len(naive)-from+1)
					Expect(rope.Slice(from, to)).To(Equal(string(naive[from:to])), "%s step %d", where, step)
				}
			}
			Expect(rope.String()).To(Equal(string(naive)), where)
		}
	})

	It("applies ops like Apply and leaves itself unchanged on a bad op", func() {
		seed := uint64(time.Now().UnixNano())
		r := rand.New(rand.NewPCG(seed, 1))
		s := randText(r, 200)
		rope := ot.NewRope(s)
		for i := range 2000 {
			o := randOp(r, len([]rune(s)))
			Expect(rope.Apply(o)).To(Succeed())
			s = mustApply(s, o)
			Expect(rope.String()).To(Equal(s), "seed %d step %d", seed, i)
		}
		err := rope.Apply(ot.Op{}.Retain(rope.Len() + 2).Insert("x"))
		Expect(err).To(MatchError(fmt.Sprintf("op spans %d code points but the text has %d", rope.Len()+2, rope.Len())))
		Expect(rope.String()).To(Equal(s))
		Expect(rope.Insert(rope.Len()+1, "x")).NotTo(Succeed())
		Expect(rope.Delete(0, rope.Len()+1)).NotTo(Succeed())
		Expect(rope.String()).To(Equal(s))
	})

	It("replays the automerge-paper trace to its endContent", func() {
		path, err := trace.Path("automerge-paper.json.gz")
		Expect(err).NotTo(HaveOccurred(), "fixture missing: the automerge-paper editing trace (testdata/traces/automerge-paper.json.gz)")
		tr, err := trace.Load(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(tr.Patches()).To(Equal(259778))
		rope := ot.NewRope(tr.StartContent)
		for i, x := range tr.Txns {
			for _, p := range x.Patches {
				o, err := ot.Splice(rope.Len(), p.Pos, p.Del, p.Ins)
				Expect(err).NotTo(HaveOccurred(), "txn %d", i)
				Expect(rope.Apply(o)).To(Succeed(), "txn %d", i)
			}
		}
		Expect(rope.String()).To(Equal(tr.EndContent))
		Expect(strings.Count(rope.String(), "")).To(Equal(len([]rune(tr.EndContent)) + 1))
	})
})
