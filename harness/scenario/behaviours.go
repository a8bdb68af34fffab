package scenario

import "time"

// Behaviour describes a role behaviour the engine implements: which service
// it speaks, whether it attacks, and its parameter struct.
type Behaviour struct {
	Name    string
	Service string // Chat, Collab, Game, or "" for every service
	Attack  bool
	Summary string
	// DefaultRate is the per-client rate when the role gives none.
	DefaultRate float64
	// Params returns a pointer to a fresh parameter struct with defaults set;
	// the parser strictly decodes the role's `params:` into it and then calls
	// its Validate method when it has one.
	Params func() any
}

// ChatterParams: joins rooms and sends messages at the role's rate.
type ChatterParams struct {
	// BodyBytes is the message body size.
	BodyBytes int `yaml:"body_bytes"`
	// RoomsPerClient is how many of the role's rooms each client joins.
	RoomsPerClient int `yaml:"rooms_per_client"`
}

// LurkerParams: joins rooms and only reads.
type LurkerParams struct {
	RoomsPerClient int `yaml:"rooms_per_client"`
}

// TypistParams: sends typing indicators and occasionally a message.
type TypistParams struct {
	BodyBytes      int `yaml:"body_bytes"`
	RoomsPerClient int `yaml:"rooms_per_client"`
}

// ResumerParams: chats, and every ReconnectEvery ends its stream, stays
// away for Offline (so others' messages pile up to be replayed) and rejoins
// from its last seen position.
type ResumerParams struct {
	BodyBytes      int           `yaml:"body_bytes"`
	RoomsPerClient int           `yaml:"rooms_per_client"`
	ReconnectEvery time.Duration `yaml:"reconnect_every"`
	Offline        time.Duration `yaml:"offline"`
}

// EditorParams: opens documents and submits random edits, or replays a
// trace file (sequential editing-traces format) when Trace is set.
type EditorParams struct {
	// Trace is a path to a .json or .json.gz editing trace.
	Trace string `yaml:"trace"`
	// MaxInsert bounds random insert length (code points).
	MaxInsert int `yaml:"max_insert"`
	// DeleteRatio is the share of random edits that delete.
	DeleteRatio float64 `yaml:"delete_ratio"`
}

// PlayerParams: joins a match and sends movement inputs at the role's rate.
type PlayerParams struct {
	// StepFraction is the move length as a fraction of the match's max step;
	// above 1 every move is a speed hack that a careful server rejects.
	StepFraction float64 `yaml:"step_fraction"`
}

// FlooderParams: sends as fast as its rate allows (set it high), ignoring
// errors, on any service.
type FlooderParams struct {
	BodyBytes int `yaml:"body_bytes"`
}

// SlowReaderParams: joins and reads with a delay before every receive.
type SlowReaderParams struct {
	ReadDelay time.Duration `yaml:"read_delay"`
}

// MalformedParams: at the role's rate sends bytes that are not a valid
// message, reconnecting after each stream the server ends.
type MalformedParams struct{}

// OversizeParams: at the role's rate sends messages of Bytes payload.
type OversizeParams struct {
	Bytes int `yaml:"bytes"`
}

// ReconnectStormParams: connects, joins, and disconnects at the role's rate
// (connections per second per client).
type ReconnectStormParams struct {
	// Abrupt closes the TCP connection without a goodbye instead of
	// cancelling the stream.
	Abrupt bool `yaml:"abrupt"`
}

// OpenCancelParams: opens streams on one connection and cancels each at
// once, at the role's rate.
type OpenCancelParams struct{}

// Behaviours is the catalogue, by name.
var Behaviours = map[string]Behaviour{
	"chatter": {Name: "chatter", Service: Chat, Summary: "joins rooms and sends messages", DefaultRate: 1,
		Params: func() any { return &ChatterParams{BodyBytes: 32, RoomsPerClient: 1} }},
	"lurker": {Name: "lurker", Service: Chat, Summary: "joins rooms and only reads",
		Params: func() any { return &LurkerParams{RoomsPerClient: 1} }},
	"typist": {Name: "typist", Service: Chat, Summary: "sends typing indicators, sometimes a message", DefaultRate: 2,
		Params: func() any { return &TypistParams{BodyBytes: 32, RoomsPerClient: 1} }},
	"resumer": {Name: "resumer", Service: Chat, Summary: "chats and periodically reconnects, resuming from its last position", DefaultRate: 1,
		Params: func() any {
			return &ResumerParams{BodyBytes: 32, RoomsPerClient: 1, ReconnectEvery: 5 * time.Second, Offline: 500 * time.Millisecond}
		}},
	"editor": {Name: "editor", Service: Collab, Summary: "random or trace-driven edits to documents", DefaultRate: 2,
		Params: func() any { return &EditorParams{MaxInsert: 8, DeleteRatio: 0.3} }},
	"player": {Name: "player", Service: Game, Summary: "walks randomly in a match", DefaultRate: 20,
		Params: func() any { return &PlayerParams{StepFraction: 0.8} }},
	"flooder": {Name: "flooder", Attack: true, Summary: "sends far over any sane rate", DefaultRate: 2000,
		Params: func() any { return &FlooderParams{BodyBytes: 32} }},
	"slow-reader": {Name: "slow-reader", Attack: true, Summary: "reads with a delay before every receive",
		Params: func() any { return &SlowReaderParams{ReadDelay: time.Second} }},
	"malformed-sender": {Name: "malformed-sender", Attack: true, Summary: "sends undecodable messages", DefaultRate: 1,
		Params: func() any { return &MalformedParams{} }},
	"oversize-sender": {Name: "oversize-sender", Attack: true, Summary: "sends messages over the size limit", DefaultRate: 1,
		Params: func() any { return &OversizeParams{Bytes: 8 << 20} }},
	"reconnect-storm": {Name: "reconnect-storm", Attack: true, Summary: "connects, joins and drops, over and over", DefaultRate: 5,
		Params: func() any { return &ReconnectStormParams{} }},
	"open-cancel": {Name: "open-cancel", Attack: true, Summary: "opens streams and cancels them at once", DefaultRate: 50,
		Params: func() any { return &OpenCancelParams{} }},
}
