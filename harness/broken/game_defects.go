package broken

import "fmt"

// GameDefect is the one thing the corpus's tick server (StartGameTicks)
// does wrong with its updates. Each fires on every tickDefectEvery-th tick
// of a match and is caught by game-invariants, whose evidence must name it;
// every other check must pass on it.
type GameDefect int

const (
	// GameNone is the correct variant: every player gets one update per
	// tick, deltas in tick order, the first one after a join full.
	GameNone GameDefect = iota
	// GameTickSkipped sends no update for one tick: the next delta follows
	// the one before by two ticks, and the skipped tick's changes are never
	// seen. game-invariants: "tick skipped".
	GameTickSkipped
	// GameTickRepeated runs a tick without advancing the tick number: two
	// updates with different states carry one tick. game-invariants: "the
	// tick number repeated with a different state".
	GameTickRepeated
	// GameStateSentTwice sends one tick's update twice. game-invariants:
	// "the same state sent again".
	GameStateSentTwice
)

// tickDefectEvery: a game defect fires on every tickDefectEvery-th tick of
// a match.
const tickDefectEvery = 10

var gameDefectNames = [...]string{"GameNone", "GameTickSkipped", "GameTickRepeated", "GameStateSentTwice"}

// String is the constant's name, as in "// defect: <Name>".
func (d GameDefect) String() string {
	if d >= 0 && int(d) < len(gameDefectNames) {
		return gameDefectNames[d]
	}
	return fmt.Sprintf("GameDefect(%d)", int(d))
}

// GameDefects lists every game defect, GameNone first.
func GameDefects() []GameDefect {
	out := make([]GameDefect, len(gameDefectNames))
	for i := range out {
		out[i] = GameDefect(i)
	}
	return out
}
