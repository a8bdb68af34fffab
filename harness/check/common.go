package check

import (
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/bidikit/bidikit/harness/event"
)

// msgKey identifies a chat message by its author and client message id,
// hashed to keep per-sequence state small.
func msgKey(sender, msgID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(sender))
	h.Write([]byte{0})
	h.Write([]byte(msgID))
	return h.Sum64()
}

// memberKey identifies one client's membership of one scope.
type memberKey struct {
	client int
	scope  string
}

// clientName renders a client for evidence.
func clientName(e *event.Event) string {
	if e.User != "" {
		return fmt.Sprintf("#%d %s (%s)", e.Client, e.User, e.Role)
	}
	return fmt.Sprintf("#%d (%s)", e.Client, e.Role)
}

// firstExpected is the first room sequence a member must receive after a
// Join event: the first replayed seq, or the one after the head.
func firstExpected(e *event.Event) uint64 {
	if e.ReplayFrom > 0 {
		return e.ReplayFrom
	}
	return e.Seq + 1
}

// noParams decodes an empty parameter block (rejecting any field).
func noParams(decode func(any) error) error {
	var p struct{}
	return decode(&p)
}

// summarise fills a verdict's status and summary from its violations.
func summarise(v *Verdict, ok string, failf string, args ...any) {
	if v.Violations == 0 {
		v.Status = Pass
		v.Summary = ok
		return
	}
	v.Status = Fail
	v.Summary = fmt.Sprintf(failf, args...)
}

// at renders an event time for details.
func at(d time.Duration) string { return d.Round(time.Millisecond).String() }

// seqSet is a set of sequence numbers kept as sorted, disjoint, non-adjacent
// closed intervals: small when arrivals are mostly consecutive, correct in
// any arrival order. The zero value is empty. Owned by one checker (the
// dispatcher goroutine); not safe for concurrent use.
type seqSet struct {
	iv [][2]uint64
}

// add inserts seq and reports whether it was new.
func (s *seqSet) add(seq uint64) bool {
	// i: the first interval whose end is >= seq-1 (it may absorb seq).
	lo, hi := 0, len(s.iv)
	for lo < hi {
		m := (lo + hi) / 2
		if s.iv[m][1]+1 < seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	i := lo
	if i < len(s.iv) && s.iv[i][0] <= seq && seq <= s.iv[i][1] {
		return false
	}
	switch {
	case i < len(s.iv) && s.iv[i][1]+1 == seq:
		s.iv[i][1] = seq
		if i+1 < len(s.iv) && s.iv[i+1][0] == seq+1 {
			s.iv[i][1] = s.iv[i+1][1]
			s.iv = append(s.iv[:i+1], s.iv[i+2:]...)
		}
	case i < len(s.iv) && s.iv[i][0] == seq+1:
		s.iv[i][0] = seq
	default:
		s.iv = append(s.iv, [2]uint64{})
		copy(s.iv[i+1:], s.iv[i:])
		s.iv[i] = [2]uint64{seq, seq}
	}
	return true
}

// has reports whether seq is in the set.
func (s *seqSet) has(seq uint64) bool {
	lo, hi := 0, len(s.iv)
	for lo < hi {
		m := (lo + hi) / 2
		if s.iv[m][1] < seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(s.iv) && s.iv[lo][0] <= seq
}

// max is the highest seq in the set (0 when empty).
func (s *seqSet) max() uint64 {
	if len(s.iv) == 0 {
		return 0
	}
	return s.iv[len(s.iv)-1][1]
}

// empty reports whether nothing was added.
func (s *seqSet) empty() bool { return len(s.iv) == 0 }

// holes calls fn for each maximal run [from, to] of seqs in [lo, hi] that
// the set lacks, in ascending order, until fn returns false.
func (s *seqSet) holes(lo, hi uint64, fn func(from, to uint64) bool) {
	if lo > hi {
		return
	}
	next := lo
	for _, iv := range s.iv {
		if iv[1] < next {
			continue
		}
		if iv[0] > hi {
			break
		}
		if iv[0] > next {
			if !fn(next, iv[0]-1) {
				return
			}
		}
		if iv[1] >= hi {
			return
		}
		next = iv[1] + 1
	}
	if next <= hi {
		fn(next, hi)
	}
}

// notMeasurable sets v to not measurable with the reason.
func notMeasurable(v *Verdict, format string, args ...any) Verdict {
	v.Status = NotMeasurable
	v.Summary = fmt.Sprintf(format, args...)
	return *v
}

// memberships tracks one checker's open memberships (a Join until its
// Leave, its stream's Disconnect or the client's next Join of the scope),
// each with state of type T. Owned by the checker (the dispatcher
// goroutine).
type memberships[T any] struct {
	open map[memberKey]T
	// byClient lists each client's scopes with an open membership, in join
	// order, so that a Disconnect or an Unread touches that client's
	// memberships only: scanning every open one per event made a teardown
	// of 10,000 clients quadratic (10^8 steps per checker).
	byClient map[int][]string
	// opened counts the Joins seen.
	opened int
}

func newMemberships[T any]() memberships[T] {
	return memberships[T]{open: map[memberKey]T{}, byClient: map[int][]string{}}
}

// track applies e's membership changes: a Join closes the client's open
// membership of the scope (if any) and opens one with start(e); a Leave
// closes it; a Disconnect closes every membership of the client. end runs
// for each closed membership (nil: nothing to judge at the end).
func (m *memberships[T]) track(e *event.Event, start func(*event.Event) T, end func(memberKey, T)) {
	k := memberKey{e.Client, e.Scope}
	switch e.Kind {
	case event.Join:
		m.close(k, end)
		m.opened++
		m.open[k] = start(e)
		m.byClient[e.Client] = append(m.byClient[e.Client], e.Scope)
	case event.Leave:
		m.close(k, end)
	case event.Disconnect:
		for _, scope := range slices.Clone(m.byClient[e.Client]) {
			m.close(memberKey{e.Client, scope}, end)
		}
	}
}

// ofClient calls fn for each open membership of client, in join order.
func (m *memberships[T]) ofClient(client int, fn func(memberKey, T)) {
	for _, scope := range m.byClient[client] {
		k := memberKey{client, scope}
		fn(k, m.open[k])
	}
}

// get returns e's open membership state.
func (m *memberships[T]) get(e *event.Event) (T, bool) {
	s, ok := m.open[memberKey{e.Client, e.Scope}]
	return s, ok
}

func (m *memberships[T]) close(k memberKey, end func(memberKey, T)) {
	s, ok := m.open[k]
	if !ok {
		return
	}
	delete(m.open, k)
	scopes := m.byClient[k.client]
	if i := slices.Index(scopes, k.scope); i >= 0 {
		scopes = slices.Delete(scopes, i, i+1)
	}
	if len(scopes) == 0 {
		delete(m.byClient, k.client)
	} else {
		m.byClient[k.client] = scopes
	}
	if end != nil {
		end(k, s)
	}
}

// closeAll closes every open membership in a deterministic order (the
// events ended).
func (m *memberships[T]) closeAll(end func(memberKey, T)) {
	keys := make([]memberKey, 0, len(m.open))
	for k := range m.open {
		keys = append(keys, k)
	}
	sortMembers(keys)
	for _, k := range keys {
		m.close(k, end)
	}
}

// unreadNote is the first message a run's clients could not read (who, and
// the driver's reason), for the summaries of the checks that leave such
// clients unjudged: a user sees why, not only how many.
type unreadNote string

// see keeps e (an event.Unread) when it is the first.
func (n *unreadNote) see(e *event.Event) {
	if *n == "" {
		*n = unreadNote(clientName(e) + ": " + e.Detail)
	}
}

// String is " (the first: who: why)", or "" when none was seen.
func (n unreadNote) String() string {
	if n == "" {
		return ""
	}
	return " (the first: " + string(n) + ")"
}
