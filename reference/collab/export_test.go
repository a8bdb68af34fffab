package collab

import "github.com/bidikit/bidikit/reference/store"

// NewLocalLog returns the store-backed document log New assembles, and its
// close, for the specs of the log itself.
func NewLocalLog(st store.Store) (SharedLog, func()) {
	l := newLocalLog(st)
	return l, l.close
}
