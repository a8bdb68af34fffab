package ot

import (
	"fmt"
	"unicode/utf8"
)

// Side breaks the tie when two concurrent ops insert at the same position.
type Side uint8

const (
	// Left puts a's insert before b's at the same position.
	Left Side = iota
	// Right puts a's insert after b's at the same position. The server
	// transforms a late op with Right against the ops committed before it,
	// so the op committed first keeps the left place.
	Right
)

// iter walks an Op, possibly consuming a component in several pieces.
type iter struct {
	o   Op
	i   int
	off int // code points of o[i] already consumed
}

func (it *iter) kind() Kind {
	if it.i >= len(it.o) {
		return 0
	}
	return it.o[it.i].Kind
}

func (it *iter) left() int { return it.o[it.i].N - it.off }

// take consumes up to n code points (n < 0: the rest) of the current
// component and returns them.
func (it *iter) take(n int) Component {
	c := it.o[it.i]
	rest := c.N - it.off
	if n < 0 || n > rest {
		n = rest
	}
	out := Component{Kind: c.Kind, N: n}
	if c.Kind == Insert {
		if it.off == 0 && n == c.N {
			out.Text = c.Text
		} else {
			out.Text = runeSlice(c.Text, it.off, it.off+n)
		}
	}
	it.off += n
	if it.off >= c.N {
		it.i++
		it.off = 0
	}
	return out
}

// runeSlice returns s[from:to] counted in code points.
func runeSlice(s string, from, to int) string {
	start, i, n := -1, 0, 0
	for i < len(s) {
		if n == from {
			start = i
		}
		if n == to {
			break
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		i += w
		n++
	}
	if start < 0 {
		start = i
	}
	return s[start:i]
}

// Transform takes two ops a and b made concurrently on the same text and
// returns a' (a rebased onto b) and b' (b rebased onto a), so that
// Apply(Apply(s, a), b') == Apply(Apply(s, b), a') (TP1). side says whose
// insert goes first when both insert at the same position.
func Transform(a, b Op, side Side) (Op, Op, error) {
	if al, bl := a.BaseLen(), b.BaseLen(); al != bl {
		return nil, nil, fmt.Errorf("cannot transform: the ops span different texts (%d and %d code points)", al, bl)
	}
	ia, ib := iter{o: a}, iter{o: b}
	ap := make(Op, 0, len(a)+2)
	bp := make(Op, 0, len(b)+2)
	for {
		ka, kb := ia.kind(), ib.kind()
		if ka == 0 && kb == 0 {
			return ap, bp, nil
		}
		if ka == Insert && (kb != Insert || side == Left) {
			c := ia.take(-1)
			ap = ap.Insert(c.Text)
			bp = bp.Retain(c.N)
			continue
		}
		if kb == Insert {
			c := ib.take(-1)
			ap = ap.Retain(c.N)
			bp = bp.Insert(c.Text)
			continue
		}
		if ka == 0 || kb == 0 {
			return nil, nil, fmt.Errorf("cannot transform: ops end at different places")
		}
		n := min(ia.left(), ib.left())
		ia.take(n)
		ib.take(n)
		switch {
		case ka == Retain && kb == Retain:
			ap = ap.Retain(n)
			bp = bp.Retain(n)
		case ka == Delete && kb == Retain:
			ap = ap.Delete(n)
		case ka == Retain && kb == Delete:
			bp = bp.Delete(n)
		}
		// Delete/Delete: both removed the same text; nothing is left to do.
	}
}

// Compose returns one op equivalent to applying a and then b.
func Compose(a, b Op) (Op, error) {
	if at, bb := a.TargetLen(), b.BaseLen(); at != bb {
		return nil, fmt.Errorf("cannot compose: the first op produces %d code points but the second spans %d", at, bb)
	}
	ia, ib := iter{o: a}, iter{o: b}
	out := make(Op, 0, len(a)+len(b))
	for {
		ka, kb := ia.kind(), ib.kind()
		if ka == 0 && kb == 0 {
			return out, nil
		}
		if ka == Delete {
			out = out.Delete(ia.take(-1).N)
			continue
		}
		if kb == Insert {
			out = out.Insert(ib.take(-1).Text)
			continue
		}
		if ka == 0 || kb == 0 {
			return nil, fmt.Errorf("cannot compose: ops end at different places")
		}
		n := min(ia.left(), ib.left())
		ca := ia.take(n)
		ib.take(n)
		switch {
		case ka == Retain && kb == Retain:
			out = out.Retain(n)
		case ka == Retain && kb == Delete:
			out = out.Delete(n)
		case ka == Insert && kb == Retain:
			out = out.Insert(ca.Text)
		}
		// Insert then Delete cancel out.
	}
}
