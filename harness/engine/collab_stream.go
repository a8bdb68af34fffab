package engine

import (
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
)

// maxHoles bounds the versions a versionTrack remembers as skipped: a server
// that jumps a million versions ahead costs no more than this.
const maxHoles = 256

// versionTrack follows the versions one collab stream carried for its
// document since Opened: the highest one (top) and the skipped ones that
// have not arrived yet (holes, ascending, at most maxHoles), so that a
// version below top tells a late first arrival from a repeat. Owned by the
// collab driver under its mu.
type versionTrack struct {
	top   uint64
	holes []uint64
}

// arrival is how one version arrived on a stream.
type arrival uint8

const (
	inOrder  arrival = iota // the next version
	skipped                 // above the next: the versions between are missing
	repeated                // this membership already had it
	late                    // a skipped version, arriving after a higher one
)

// reset starts a membership at version v (its Opened).
func (t *versionTrack) reset(v uint64) {
	t.top = v
	t.holes = t.holes[:0]
}

// see records that version v arrived; it returns how, and the version that
// was expected next before it.
func (t *versionTrack) see(v uint64) (arrival, uint64) {
	want := t.top + 1
	switch {
	case v == want:
		t.top = v
		return inOrder, want
	case v > want:
		for s := want; s < v && len(t.holes) < maxHoles; s++ {
			t.holes = append(t.holes, s)
		}
		t.top = v
		return skipped, want
	}
	if i, ok := slices.BinarySearch(t.holes, v); ok {
		t.holes = slices.Delete(t.holes, i, i+1)
		return late, want
	}
	return repeated, want
}

// anomaly builds an Anomaly event about d's document.
func (d *collabDriver) anomaly(field string, received, expected uint64, msgID, detail string) event.Event {
	return event.Event{Kind: event.Anomaly, Scope: d.doc, Field: field, Seq: received, ReplayFrom: expected, MsgID: msgID, Detail: detail}
}

// receivedLocked records that version v (an op msgID, remote or this
// client's own acked one) arrived on the stream, and appends an anomaly to
// out when it did not arrive as the next version. mu held.
func (d *collabDriver) receivedLocked(v uint64, msgID, what string, out []event.Event) []event.Event {
	if !d.opened || v == 0 {
		return out
	}
	how, want := d.track.see(v)
	switch how {
	case skipped:
		missing := fmt.Sprintf("version %d", want)
		if v-want > 1 {
			missing = fmt.Sprintf("versions %d..%d", want, v-1)
		}
		out = append(out, d.anomaly(event.AnomalyMissing, v, want, msgID,
			fmt.Sprintf("%s for version %d arrived while version %d was expected: %s had not arrived", what, v, want, missing)))
	case repeated:
		out = append(out, d.anomaly(event.AnomalyRepeated, v, want, msgID,
			fmt.Sprintf("%s for version %d arrived again (the stream was at version %d, expecting %d)", what, v, want-1, want)))
	case late:
		out = append(out, d.anomaly(event.AnomalyOutOfOrder, v, want, msgID,
			fmt.Sprintf("%s for version %d arrived after version %d", what, v, want-1)))
	}
	return out
}

// giveUpLocked marks the replica as lost: the send loop reconnects and the
// document is reopened from a snapshot. The first cause on a stream is
// appended to out as an AnomalyResync (code: see event.Anomaly); later ones
// add nothing. mu held.
func (d *collabDriver) giveUpLocked(cause string, received, expected uint64, msgID string, code codes.Code, out []event.Event) []event.Event {
	if d.resync {
		return out
	}
	d.resync = true
	d.signal()
	e := d.anomaly(event.AnomalyResync, received, expected, msgID,
		fmt.Sprintf("replica given up at version %d, to be reopened from a snapshot: %s", d.version, cause))
	e.Code = code
	return append(out, e)
}

// emitAll emits evs in order (mu not held).
func (d *collabDriver) emitAll(evs []event.Event) {
	for i := range evs {
		d.c.ev(&evs[i])
	}
}
