package check

import (
	"fmt"
	"hash/fnv"
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
