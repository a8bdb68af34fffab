package broken

import "fmt"

// ChatDefect is the one thing a chat server of the corpus does wrong. The
// comment of each names the check that must catch it; every other check
// must pass on it.
type ChatDefect int

const (
	// None is the correct variant: the control every scenario of the corpus
	// must pass against.
	None ChatDefect = iota
	// ReorderSome swaps pairs of consecutive live messages of a room for
	// every second subscriber; each message still arrives exactly once.
	// Caught by delivery-order.
	ReorderSome
	// SeqGap lets the room sequence skip a number now and then (every tenth
	// one). Caught by no-gaps.
	SeqGap
	// ResendStoredTwice does not de-duplicate: a resend after a reconnect
	// of a message that was stored (but whose ack was lost) is stored again
	// under a new seq. Caught by no-duplicates.
	ResendStoredTwice
	// AckNeverStored acknowledges every ninth send with a seq that is never
	// stored nor broadcast. Caught by no-lost-acks (and no-gaps: members see
	// the seq skipped).
	AckNeverStored
	// DropSubscription makes every second subscriber silently stop
	// receiving a room after 20 messages of it: the stream stays open and
	// no error is said. Caught by no-lost-acks (the loss is at the end of
	// the membership: no jump is ever seen).
	DropSubscription
	// ResumeSeamOffByOne replays a resume from resume_after+2 instead of
	// resume_after+1, and still says resume_complete. Caught by
	// resume-complete.
	ResumeSeamOffByOne
	// LeakPerStream leaves one goroutine behind, blocked until Stop, per
	// ended stream. Caught by leaks.
	LeakPerStream
	// BlockingBroadcast calls stream.Send for every member directly, under
	// the room lock: one slow reader stalls the whole room. Caught by
	// fairness (honest latency).
	BlockingBroadcast
	// NoRateLimit has no per-user rate limit: flooders are never refused.
	// Caught by fairness.
	NoRateLimit
)

var defectNames = [...]string{"None", "ReorderSome", "SeqGap", "ResendStoredTwice", "AckNeverStored",
	"DropSubscription", "ResumeSeamOffByOne", "LeakPerStream", "BlockingBroadcast", "NoRateLimit"}

// String is the constant's name, as in "// defect: <Name>".
func (d ChatDefect) String() string {
	if d >= 0 && int(d) < len(defectNames) {
		return defectNames[d]
	}
	return fmt.Sprintf("ChatDefect(%d)", int(d))
}

// ChatDefects lists every defect, None first.
func ChatDefects() []ChatDefect {
	out := make([]ChatDefect, len(defectNames))
	for i := range out {
		out[i] = ChatDefect(i)
	}
	return out
}
