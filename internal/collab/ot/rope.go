package ot

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxChunk is the most code points one rope leaf chunk holds. Small edits
// inside a chunk move at most this many runes.
const maxChunk = 512

// Rope is a text held as a balanced tree (an implicit treap) of []rune
// chunks, each node caching the code points of its subtree. Insert and
// Delete cost O(log n + maxChunk); Len is O(1); String and Slice copy only
// what they return. The zero Rope is an empty text. A Rope is not safe for
// concurrent use: its owner (the collab document actor) serialises access.
type Rope struct {
	root *node
	seed uint64
}

type node struct {
	left, right *node
	chunk       []rune
	size        int // code points in this subtree
	prio        uint64
}

// NewRope returns a rope holding s.
func NewRope(s string) *Rope {
	r := &Rope{}
	r.Insert(0, s)
	return r
}

func (r *Rope) rand() uint64 {
	// xorshift64*: deterministic per rope, good enough for treap priorities.
	if r.seed == 0 {
		r.seed = 0x9E3779B97F4A7C15
	}
	r.seed ^= r.seed >> 12
	r.seed ^= r.seed << 25
	r.seed ^= r.seed >> 27
	return r.seed * 2685821657736338717
}

func size(n *node) int {
	if n == nil {
		return 0
	}
	return n.size
}

func (n *node) update() { n.size = size(n.left) + len(n.chunk) + size(n.right) }

// Len returns the number of code points.
func (r *Rope) Len() int { return size(r.root) }

// split cuts t into the first k code points and the rest.
func split(t *node, k int) (*node, *node) {
	if t == nil {
		return nil, nil
	}
	ls := size(t.left)
	switch {
	case k <= ls:
		l, rr := split(t.left, k)
		t.left = rr
		t.update()
		return l, t
	case k >= ls+len(t.chunk):
		l, rr := split(t.right, k-ls-len(t.chunk))
		t.right = l
		t.update()
		return t, rr
	}
	off := k - ls
	// The right half keeps t's priority, so it still dominates t.right.
	right := &node{chunk: append(make([]rune, 0, maxChunk), t.chunk[off:]...), right: t.right, prio: t.prio}
	t.chunk = t.chunk[:off]
	t.right = nil
	t.update()
	right.update()
	return t, right
}

// merge joins a and b (every code point of a before b).
func merge(a, b *node) *node {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	if a.prio > b.prio {
		a.right = merge(a.right, b)
		a.update()
		return a
	}
	b.left = merge(a, b.left)
	b.update()
	return b
}

// insertInPlace puts rs at k inside an existing chunk that has room, and
// reports whether it could.
func insertInPlace(t *node, k int, rs []rune) bool {
	if t == nil {
		return false
	}
	ls := size(t.left)
	var ok bool
	switch {
	case k < ls:
		ok = insertInPlace(t.left, k, rs)
	case k > ls+len(t.chunk):
		ok = insertInPlace(t.right, k-ls-len(t.chunk), rs)
	default:
		if len(t.chunk)+len(rs) > maxChunk {
			return false
		}
		off := k - ls
		t.chunk = append(t.chunk, rs...)
		copy(t.chunk[off+len(rs):], t.chunk[off:])
		copy(t.chunk[off:], rs)
		ok = true
	}
	if ok {
		t.size += len(rs)
	}
	return ok
}

// deleteInPlace removes n code points at k when they lie inside one chunk
// that keeps at least one code point, and reports whether it could.
func deleteInPlace(t *node, k, n int) bool {
	if t == nil {
		return false
	}
	ls := size(t.left)
	var ok bool
	switch {
	case k < ls:
		ok = deleteInPlace(t.left, k, n)
	case k >= ls+len(t.chunk):
		ok = deleteInPlace(t.right, k-ls-len(t.chunk), n)
	default:
		off := k - ls
		if off+n > len(t.chunk) || n >= len(t.chunk) {
			return false
		}
		t.chunk = append(t.chunk[:off], t.chunk[off+n:]...)
		ok = true
	}
	if ok {
		t.size -= n
	}
	return ok
}

func (r *Rope) chunks(rs []rune) *node {
	var t *node
	for len(rs) > 0 {
		n := min(len(rs), maxChunk/2)
		c := append(make([]rune, 0, maxChunk), rs[:n]...)
		t = merge(t, &node{chunk: c, size: n, prio: r.rand()})
		rs = rs[n:]
	}
	return t
}

// Insert inserts s at code point pos (0 <= pos <= Len).
func (r *Rope) Insert(pos int, s string) error {
	if pos < 0 || pos > r.Len() {
		return fmt.Errorf("insert at %d outside a text of %d code points", pos, r.Len())
	}
	if s == "" {
		return nil
	}
	rs := []rune(s)
	if insertInPlace(r.root, pos, rs) {
		return nil
	}
	l, rr := split(r.root, pos)
	r.root = merge(merge(l, r.chunks(rs)), rr)
	return nil
}

// Delete removes n code points at pos.
func (r *Rope) Delete(pos, n int) error {
	if pos < 0 || n < 0 || pos+n > r.Len() {
		return fmt.Errorf("delete of %d at %d outside a text of %d code points", n, pos, r.Len())
	}
	if n == 0 || deleteInPlace(r.root, pos, n) {
		return nil
	}
	l, rest := split(r.root, pos)
	_, rr := split(rest, n)
	r.root = merge(l, rr)
	return nil
}

// String returns the whole text.
func (r *Rope) String() string { return r.Slice(0, r.Len()) }

// Slice returns the code points [from, to).
func (r *Rope) Slice(from, to int) string {
	from = max(from, 0)
	to = min(to, r.Len())
	if from >= to {
		return ""
	}
	var b strings.Builder
	b.Grow(to - from)
	walk(r.root, 0, from, to, &b)
	return b.String()
}

func walk(t *node, base, from, to int, b *strings.Builder) {
	if t == nil || base >= to || base+t.size <= from {
		return
	}
	ls := size(t.left)
	walk(t.left, base, from, to, b)
	cs := base + ls
	lo := min(max(from-cs, 0), len(t.chunk))
	hi := min(max(to-cs, 0), len(t.chunk))
	for _, c := range t.chunk[lo:max(hi, lo)] {
		b.WriteRune(c)
	}
	walk(t.right, cs+len(t.chunk), from, to, b)
}

// Apply applies o to the rope in place. It checks o's length first, so on
// error the rope is unchanged.
func (r *Rope) Apply(o Op) error {
	if bl := o.BaseLen(); bl != r.Len() {
		return &LengthError{OpLen: bl, TextLen: r.Len()}
	}
	pos := 0
	for _, c := range o {
		switch c.Kind {
		case Retain:
			pos += c.N
		case Insert:
			if c.N == 1 && len(c.Text) == 1 {
				// Fast path for typing: no string -> []rune conversion.
				if insertInPlace(r.root, pos, []rune{rune(c.Text[0])}) {
					pos++
					continue
				}
			}
			if err := r.Insert(pos, c.Text); err != nil {
				return err
			}
			pos += utf8.RuneCountInString(c.Text)
		case Delete:
			if err := r.Delete(pos, c.N); err != nil {
				return err
			}
		}
	}
	return nil
}
