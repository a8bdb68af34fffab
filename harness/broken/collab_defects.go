package broken

import "fmt"

// CollabDefect is the one thing the corpus's OT collab server
// (StartCollabStream) does wrong with its op stream. The comment of each
// names the checks that must catch it; every other check must pass on it.
// Each fires on every defectEvery-th committed op of a document.
type CollabDefect int

const (
	// CollabNone is the correct variant: a server-ordered OT server whose
	// op stream carries every version once, in order.
	CollabNone CollabDefect = iota
	// CollabSkipVersion lets the version counter jump by two now and then:
	// no op ever holds the skipped version, so every stream (the author's
	// ack included) sees it missing. Caught by no-gaps, and by convergence
	// (each replica has to be rebuilt from a snapshot).
	CollabSkipVersion
	// CollabBroadcastTwice sends one op twice to every other editor (same
	// version). The replicas ignore the repeat and converge. Caught by
	// no-duplicates.
	CollabBroadcastTwice
	// CollabSwapTwo holds one op's broadcast back until the next op has
	// been broadcast: every other editor gets version v+1 before v. Caught
	// by delivery-order, and by convergence (the replicas that got v+1
	// first are rebuilt from a snapshot); nothing is missing in the end.
	CollabSwapTwo
	// CollabAckNeverBroadcast commits an op and acknowledges it to its
	// author, but never broadcasts it to the other editors. Caught by
	// no-lost-acks, no-gaps (the others see the version skipped) and
	// convergence (their replicas are rebuilt from a snapshot).
	CollabAckNeverBroadcast
)

// defectEvery: a collab defect fires on every defectEvery-th committed op
// of a document.
const defectEvery = 10

var collabDefectNames = [...]string{"CollabNone", "CollabSkipVersion", "CollabBroadcastTwice", "CollabSwapTwo", "CollabAckNeverBroadcast"}

// String is the constant's name, as in "// defect: <Name>".
func (d CollabDefect) String() string {
	if d >= 0 && int(d) < len(collabDefectNames) {
		return collabDefectNames[d]
	}
	return fmt.Sprintf("CollabDefect(%d)", int(d))
}

// CollabDefects lists every collab defect, CollabNone first.
func CollabDefects() []CollabDefect {
	out := make([]CollabDefect, len(collabDefectNames))
	for i := range out {
		out[i] = CollabDefect(i)
	}
	return out
}
