package check

import (
	"fmt"

	"github.com/bidikit/bidikit/harness/event"
)

// tickAnomaly names what is wrong with the tick of update e (a Tick event)
// after the same membership's previous update at tick prev with digest
// prevDigest (Tick.SenderSeq; 0 = unknown), or returns "" when nothing is.
// The contract (game.proto, TickUpdate): the tick increases by at least one
// per update, and a delta lists the players that changed in its tick, so a
// delta that does not follow its predecessor's tick by exactly one leaves
// the changes of the ticks between unseen — only a full update may skip.
// Each anomaly is named apart: ticks going backwards, one state sent twice
// (same tick, same digest), one tick number used for two states (same tick,
// another digest) and a skipped tick.
func tickAnomaly(who string, prev, prevDigest uint64, e *event.Event) string {
	switch {
	case e.Seq < prev:
		return fmt.Sprintf("%s got tick %d after tick %d: ticks went backwards", who, e.Seq, prev)
	case e.Seq == prev && e.SenderSeq != 0 && e.SenderSeq == prevDigest:
		return fmt.Sprintf("%s got the update for tick %d twice: the same state sent again", who, e.Seq)
	case e.Seq == prev && e.SenderSeq != 0 && prevDigest != 0:
		return fmt.Sprintf("%s got tick %d after tick %d: the tick number repeated with a different state", who, e.Seq, prev)
	case e.Seq == prev:
		return fmt.Sprintf("%s got tick %d after tick %d: the tick repeated", who, e.Seq, prev)
	case e.Seq > prev+1 && !e.Full:
		missed := fmt.Sprintf("tick %d", prev+1)
		if e.Seq-prev > 2 {
			missed = fmt.Sprintf("ticks %d..%d", prev+1, e.Seq-1)
		}
		return fmt.Sprintf("%s got a delta for tick %d after tick %d: tick skipped, the changes of %s never arrived (only a full update may skip ticks)",
			who, e.Seq, prev, missed)
	}
	return ""
}
