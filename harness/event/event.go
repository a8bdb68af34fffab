// Package event defines the observations a run produces: one flat Event type
// on one stream, in which failures are data. Virtual clients emit events; the
// engine delivers them in batches to metrics and checkers. Nothing here talks
// to the network or decides a verdict.
package event

import (
	"time"

	"google.golang.org/grpc/codes"
)

// Kind says what an Event records; each kind documents the fields it sets.
type Kind uint8

const (
	// Connect: a client's stream opened. Latency = dial + stream setup
	// time, Detail = the target address the stream reached (engine).
	Connect Kind = iota + 1
	// Disconnect: a client's stream ended. Code = final gRPC status code
	// (codes.OK for a clean io.EOF after CloseSend), Detail = status message.
	// When the client had sent CloseSend, Latency = time from CloseSend to
	// the end; Field = FieldCloseGrace when the server did not end the
	// stream within the grace after CloseSend (Code DEADLINE_EXCEEDED is
	// then the harness's, not the server's). It precedes the Leave events
	// of the memberships the end implied.
	Disconnect
	// Join: the server confirmed a room/document/match. Scope = its name;
	// Seq = head (chat head_seq, collab version, game tick); ResumeAfter and
	// HasResume = what the client asked for; ReplayFrom = first replayed
	// position (0 = none); Complete = resume_complete (chat) or !not_retained
	// (collab). Game: the rules the server announced in Joined.rules, X/Y =
	// the map's width and height, MaxStep = max_step, MaxInputs =
	// max_inputs_per_tick (all zero when the server announced none).
	Join
	// Leave: the client left Scope, or the stream ended while in it: then it
	// follows that stream's Disconnect (the stream's end comes first, then the
	// memberships it ended).
	Leave
	// Send: the client sent a message/op/input. Scope, MsgID (chat client
	// message id; collab "clientid/seq"; game ""), SenderSeq (sender seq,
	// client seq, input seq).
	Send
	// Ack: the server acknowledged a Send. Scope, MsgID, SenderSeq, Seq =
	// assigned position (room seq, document version), Duplicate, Latency =
	// send-to-ack.
	Ack
	// Deliver: the client received another client's (or its own) message.
	// Scope, Seq, Sender (author user id), MsgID, SenderSeq, Replay, Latency =
	// send-to-delivery (from the echoed client timestamp). Collab: a remote
	// op (Seq = its version); an editor's own op reaches it only as its Ack,
	// so each non-duplicate Ack with a version is followed by a Deliver with
	// Field = FieldOwnAck, Sender = the editor itself and no Latency: the
	// Delivers of a membership are then every version its stream carried,
	// and the ordering checks (no-gaps, no-duplicates, delivery-order) judge
	// a collab replica as they judge a chat member.
	Deliver
	// Error: the server answered with an error event (stream stays open).
	// Code, Detail, Scope, MsgID, SenderSeq, Field.
	Error
	// Fault: a fault fired on this client (Client = -1 for run-wide faults).
	// Detail = fault name, Seq = the firing's number in the plan (1-based;
	// every client one firing hit has the same).
	Fault
	// Tick: a game update. Scope = match, Seq = tick, X/Y = this player's
	// position, LastInput = this player's last processed input, Dropped =
	// inputs dropped so far, Full = snapshot, Latency = input-to-update,
	// SenderSeq = a digest of the update as received (tick, full, players,
	// removed, this player's fields, server timestamp): two updates with
	// one tick and one digest are one state sent twice.
	Tick
	// Replica: a collab client's final state of a document. Scope, Seq =
	// version the replica has applied, Text = its text, SenderSeq = how many
	// of those versions it applied op by op (remote ops and its own acked
	// ops, over all its streams); the rest (Seq - SenderSeq) it took from
	// snapshots when it opened the document.
	Replica
	// ServerState: the server's authoritative state as read by a client at
	// the end (collab document text at version Seq).
	ServerState
	// Kick: the server removed this client. Detail = reason, Code = status.
	Kick
	// Phase: the run entered a named phase (Detail), e.g. "attack" when a
	// role with attack behaviour starts sending. Client = -1.
	Phase
	// Anomaly: a collab client absorbed something wrong in what the server
	// sent it (the Deliver or Ack itself is emitted too). Scope = document,
	// Field = which anomaly (AnomalyMissing, AnomalyRepeated,
	// AnomalyOutOfOrder, AnomalyNotApplicable, AnomalyResync), Seq = the
	// version received, ReplayFrom = the version the replica expected next,
	// MsgID = the op's "clientid/seq" (when one was involved), Detail = what
	// happened, in words. AnomalyResync: the client gave up its replica and
	// reopens the document from a snapshot (once per stream, with the cause
	// in Detail); Code = the status of the server's Error event that refused
	// the client's in-flight op (the server announced why), codes.Internal
	// when the harness itself failed (Detail says so), codes.OK when the
	// server said nothing: the op stream forced it.
	Anomaly
	// Attack: an HTTP/2 attack below gRPC (harness/h2attack) reports what
	// it did or what the server answered. Scope = the attack's name, Field
	// = what happened (AttackStart, AttackStop, and the h2attack
	// observation kinds: "connected", "goaway", "rst", "closed",
	// "write-blocked"), Detail = in words, Seq = frames the connection had
	// written by then (the whole attack's for AttackStop), Latency = time
	// since the attack started (for "closed": time to close), MsgID = the
	// HTTP/2 error code name (GOAWAY, RST_STREAM), Text = GOAWAY debug
	// data, SenderSeq = how many RST_STREAMs ("rst").
	Attack
	// HarnessLag: how far the harness itself fell behind in the window
	// ending at At (Client = -1; one event per Field per window, even when
	// nothing was late). Field = LagScheduler: the larger of the most a
	// probe goroutine asking to wake every few milliseconds woke late (the
	// process was starved of CPU, or paused by its garbage collector) and
	// the 99th percentile of how long the process's goroutines waited
	// runnable before they ran (a crowded run queue); LagDispatch: the
	// longest a client's receive or send loop waited to hand its events to
	// the checkers. Latency = that lag. A client's latency measurements can
	// be inflated by such lag, on its send side and on its receive side,
	// and a server cannot be blamed for it.
	HarnessLag
	// Unread: the client received a server message it could not read into
	// events: a custom protocol's mapping failed on it (Field = UnreadError),
	// none of its rules matched it (UnreadUnmatched), or it did not decode
	// with the descriptors the harness holds (UnreadUndecodable: the
	// stream's end is then the client's); Detail says which
	// and why. What the message carried (a delivery, an ack) is unknown to
	// the checks, so those that judge what a member received hold its
	// memberships only to what it did read. At most MaxUnreadPerStream per
	// stream are emitted (the last says so).
	Unread
)

// Unread event fields (Event.Field) and the most emitted per stream.
const (
	UnreadError        = "mapping-error"
	UnreadUnmatched    = "no-rule"
	UnreadUndecodable  = "undecodable"
	MaxUnreadPerStream = 16
)

// HarnessLag event fields (Event.Field).
const (
	LagScheduler = "scheduler"
	LagDispatch  = "dispatch"
)

// Attack event fields (Event.Field of an Attack event) that mark an
// attack's start and end; the others are h2attack.ObservationKind values.
const (
	AttackStart = "start"
	AttackStop  = "stop"
)

// Anomaly names (Event.Field of an Anomaly event).
const (
	// AnomalyMissing: a version arrived while a lower one was still
	// expected (ReplayFrom .. Seq-1 had not arrived).
	AnomalyMissing = "missing-version"
	// AnomalyRepeated: a version arrived that this membership already had
	// (received before, or covered by its Opened snapshot).
	AnomalyRepeated = "repeated-version"
	// AnomalyOutOfOrder: a version arrived after a higher one, the first
	// time it arrived (it had been reported missing).
	AnomalyOutOfOrder = "out-of-order"
	// AnomalyNotApplicable: a remote op arrived at the expected version but
	// does not apply to the replica's text there (Detail: the error).
	AnomalyNotApplicable = "op-not-applicable"
	// AnomalyResync: the replica was given up (see Anomaly).
	AnomalyResync = "resync"
)

// FieldCloseGrace marks a Disconnect the harness ended because the server
// did not end the stream within the grace after the client's CloseSend.
const FieldCloseGrace = "close-grace"

// FieldOwnAck marks the Deliver a collab client emits for its own op's
// Ack (see Deliver).
const FieldOwnAck = "own-ack"

// FieldClientEnd marks a Disconnect the client caused on purpose (an
// attack behaviour dropping its stream or connection): its Code is the
// harness's doing, not the server's.
const FieldClientEnd = "client-end"

// FieldNoCode marks an Error event whose message carried no status code a
// check could read (a custom protocol's error.code unmapped, unset or 0):
// its Code is OK, and whether the server refused, and how, is unknown.
const FieldNoCode = "no-code"

// FieldNoReplica marks a Replica event that carries no replica: the editor
// ended without one it could report (Detail says why: its edits were not
// all acknowledged in time, its stream ended, it was resyncing).
const FieldNoReplica = "no-replica"

var kindNames = [...]string{"", "connect", "disconnect", "join", "leave", "send", "ack", "deliver",
	"error", "fault", "tick", "replica", "server-state", "kick", "phase", "anomaly", "attack", "harness-lag", "unread"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Event is one observation. Fields not named by its Kind are zero.
type Event struct {
	Kind Kind
	// At is the time since the run started.
	At time.Duration
	// Client is the virtual client's index in the plan (-1: run-wide).
	Client int
	// Role is the client's role name from the scenario.
	Role string
	// User is the client's user id on the server.
	User string
	// Scope is the room, document or match.
	Scope string

	Seq         uint64
	Sender      string
	MsgID       string
	SenderSeq   uint64
	ResumeAfter uint64
	HasResume   bool
	ReplayFrom  uint64
	Complete    bool
	Replay      bool
	Duplicate   bool
	Full        bool
	// MaxInputs sits in Full's padding: it does not grow the event.
	MaxInputs uint32
	LastInput uint64
	Dropped   uint64
	X, Y      float64
	MaxStep   float64

	Latency time.Duration
	Code    codes.Code
	Field   string
	Detail  string
	Text    string
}
