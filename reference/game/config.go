package game

import (
	"math"
	"time"

	"github.com/spf13/pflag"

	"github.com/bidikit/bidikit/reference/streamhost"
	"github.com/bidikit/bidikit/reference/validate"
)

// Config holds the game service's rules and limits. Every limit names its
// overflow action; the zero value is not useful, start from DefaultConfig.
type Config struct {
	// TickRate is how many ticks per second every match loop runs. Default 30.
	TickRate int
	// Width and Height bound the map: positions stay in [0,Width]x[0,Height]
	// (moves are clamped at the edges). Defaults 1000 x 1000.
	Width, Height float64
	// MaxStep is the longest move one input may make (sqrt(dx²+dy²)).
	// Default 10. A longer or non-finite move is rejected: the player does
	// not move, the input counts in dropped_inputs, and an Error event
	// INVALID_ARGUMENT (field "input.dx" or "input.dy") is sent.
	MaxStep float64
	// MaxInputsPerTick bounds the inputs processed per player per tick; it is
	// also the size of each player's inbox. Default 4. Over it: the input is
	// dropped when it arrives, counted in dropped_inputs, and reported by an
	// Error event RESOURCE_EXHAUSTED (field "input").
	MaxInputsPerTick int
	// MaxPlayers bounds the players in one match. Default 100. Over it: the
	// JoinMatch is refused with an Error event RESOURCE_EXHAUSTED (field
	// "join.match"); the stream stays open.
	MaxPlayers int
	// MaxMatches bounds the matches the service hosts at once. Default 1000.
	// Over it: a JoinMatch that would create a match is refused with an Error
	// event RESOURCE_EXHAUSTED (field "join.match"); the stream stays open.
	MaxMatches int
	// IdleExpiry is how long a match without players lives on; then its loop
	// stops and the match is forgotten (a later JoinMatch creates it anew,
	// with ticks starting from 0). Default 30s.
	IdleExpiry time.Duration
	// FloodKickAfter and FloodWindow decide when a player is abusive: a
	// player with more than FloodKickAfter dropped inputs (over the per-tick
	// limit, or invalid) within FloodWindow is kicked (Kick
	// REASON_INPUT_FLOOD) and its stream ends with RESOURCE_EXHAUSTED. The
	// window is a leaky bucket: it holds FloodKickAfter drops and leaks
	// FloodKickAfter per FloodWindow, so drops at a sustained rate below
	// FloodKickAfter/FloodWindow never kick. Defaults 300 and 5s.
	FloodKickAfter int
	// FloodWindow: see FloodKickAfter.
	FloodWindow time.Duration
	// MaxQueuedTicks is how many tick updates may wait unsent in a stream's
	// queue (a reader a tick or two late, e.g. under scheduling jitter, still
	// gets every delta). Default 2. Over it: the reader is resynchronised:
	// the stale updates are replaced by one full update of the newest tick
	// (counted in Stats.Resyncs). 1 resynchronises as soon as one update is
	// unsent.
	MaxQueuedTicks int
	// QueueMessages and QueueBytes bound one stream's outbound queue. Tick
	// updates never pile up (a reader that falls behind gets the newest state
	// as one full update), so only events queued ahead of them (Joined, Left,
	// Error, Kick) can fill it. Defaults 128 and 16 MiB. Over it: the stream
	// ends with RESOURCE_EXHAUSTED (Kick REASON_SLOW_CONSUMER first, when it
	// can be written).
	QueueMessages int
	// QueueBytes: see QueueMessages.
	QueueBytes int
	// Access, when set, decides who may join a match (acl.Scoped from
	// acl.ACL.Matches fits). A refused JoinMatch gets an Error event
	// PERMISSION_DENIED (field "join.match") and the stream stays open. Nil
	// leaves every match open. It is called from streams' reader goroutines
	// concurrently, so it must be safe for concurrent use.
	Access ACL
}

// ACL decides who may join a match: Allowed reports whether user may join the
// match called name. It must be safe for concurrent use.
type ACL = streamhost.ACL

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		TickRate:         30,
		Width:            1000,
		Height:           1000,
		MaxStep:          10,
		MaxInputsPerTick: 4,
		MaxPlayers:       100,
		MaxMatches:       1000,
		IdleExpiry:       30 * time.Second,
		FloodKickAfter:   300,
		FloodWindow:      5 * time.Second,
		MaxQueuedTicks:   2,
		QueueMessages:    128,
		QueueBytes:       16 << 20,
	}
}

// RegisterFlags binds the config to --game-* flags on fs, with the current
// field values as defaults.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.TickRate, "game-tick-rate", c.TickRate, "game: ticks per second of every match loop")
	fs.Float64Var(&c.Width, "game-width", c.Width, "game: map width; positions are clamped to [0,width]")
	fs.Float64Var(&c.Height, "game-height", c.Height, "game: map height; positions are clamped to [0,height]")
	fs.Float64Var(&c.MaxStep, "game-max-step", c.MaxStep, "game: longest move one input may make; longer moves are rejected with an INVALID_ARGUMENT error event")
	fs.IntVar(&c.MaxInputsPerTick, "game-max-inputs-per-tick", c.MaxInputsPerTick, "game: inputs processed per player per tick; more are dropped and counted in dropped_inputs")
	fs.IntVar(&c.MaxPlayers, "game-max-players", c.MaxPlayers, "game: players per match; further joins get a RESOURCE_EXHAUSTED error event")
	fs.IntVar(&c.MaxMatches, "game-max-matches", c.MaxMatches, "game: matches hosted at once; joins creating more get a RESOURCE_EXHAUSTED error event")
	fs.DurationVar(&c.IdleExpiry, "game-idle-expiry", c.IdleExpiry, "game: a match without players stops and is forgotten after this long")
	fs.IntVar(&c.FloodKickAfter, "game-flood-kick-after", c.FloodKickAfter, "game: kick a player (RESOURCE_EXHAUSTED) after more than this many dropped inputs within --game-flood-window")
	fs.DurationVar(&c.FloodWindow, "game-flood-window", c.FloodWindow, "game: window for --game-flood-kick-after (a leaky bucket)")
	fs.IntVar(&c.MaxQueuedTicks, "game-max-queued-ticks", c.MaxQueuedTicks, "game: unsent tick updates a stream may have before it is sent one full update of the newest tick instead")
	fs.IntVar(&c.QueueMessages, "game-queue-messages", c.QueueMessages, "game: per-stream send queue bound in messages; over it the stream ends with RESOURCE_EXHAUSTED (slow consumer)")
	fs.IntVar(&c.QueueBytes, "game-queue-bytes", c.QueueBytes, "game: per-stream send queue bound in bytes; over it the stream ends with RESOURCE_EXHAUSTED (slow consumer)")
	validate.BindFlag(fs, "game-tick-rate", "Game.TickRate")
	validate.BindFlag(fs, "game-width", "Game.Width")
	validate.BindFlag(fs, "game-height", "Game.Height")
	validate.BindFlag(fs, "game-max-step", "Game.MaxStep")
	validate.BindFlag(fs, "game-max-inputs-per-tick", "Game.MaxInputsPerTick")
	validate.BindFlag(fs, "game-max-players", "Game.MaxPlayers")
	validate.BindFlag(fs, "game-max-matches", "Game.MaxMatches")
	validate.BindFlag(fs, "game-idle-expiry", "Game.IdleExpiry")
	validate.BindFlag(fs, "game-flood-kick-after", "Game.FloodKickAfter")
	validate.BindFlag(fs, "game-flood-window", "Game.FloodWindow")
	validate.BindFlag(fs, "game-max-queued-ticks", "Game.MaxQueuedTicks")
	validate.BindFlag(fs, "game-queue-messages", "Game.QueueMessages")
	validate.BindFlag(fs, "game-queue-bytes", "Game.QueueBytes")
}

func finitePositive(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }

// check reports the first unusable value as a *validate.SettingError
// naming its field.
func (c Config) check() error {
	switch {
	case c.TickRate < 1 || c.TickRate > 1000:
		return validate.Settingf("Game.TickRate", "is %d, want 1..1000", c.TickRate)
	case !finitePositive(c.Width):
		return validate.Settingf("Game.Width", "is %v, want a finite number > 0", c.Width)
	case !finitePositive(c.Height):
		return validate.Settingf("Game.Height", "is %v, want a finite number > 0", c.Height)
	case !finitePositive(c.MaxStep):
		return validate.Settingf("Game.MaxStep", "is %v, want a finite number > 0", c.MaxStep)
	case c.MaxInputsPerTick < 1 || c.MaxInputsPerTick > 1000:
		return validate.Settingf("Game.MaxInputsPerTick", "is %d, want 1..1000", c.MaxInputsPerTick)
	case c.MaxPlayers < 1:
		return validate.Settingf("Game.MaxPlayers", "is %d, want >= 1", c.MaxPlayers)
	case c.MaxMatches < 1:
		return validate.Settingf("Game.MaxMatches", "is %d, want >= 1", c.MaxMatches)
	case c.IdleExpiry <= 0:
		return validate.Settingf("Game.IdleExpiry", "is %v, want > 0", c.IdleExpiry)
	case c.FloodKickAfter < 1:
		return validate.Settingf("Game.FloodKickAfter", "is %d, want >= 1", c.FloodKickAfter)
	case c.FloodWindow <= 0:
		return validate.Settingf("Game.FloodWindow", "is %v, want > 0", c.FloodWindow)
	case c.MaxQueuedTicks < 1:
		return validate.Settingf("Game.MaxQueuedTicks", "is %d, want >= 1", c.MaxQueuedTicks)
	case c.QueueMessages < 4:
		return validate.Settingf("Game.QueueMessages", "is %d, want >= 4", c.QueueMessages)
	case c.QueueBytes < 64<<10:
		return validate.Settingf("Game.QueueBytes", "is %d, want >= 65536", c.QueueBytes)
	}
	return nil
}
