package chat

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/bidikit/bidikit/reference/validate"
)

// Config holds the chat service's limits. Every limit names its overflow
// action; the zero value is not useful, start from DefaultConfig.
type Config struct {
	// MaxBodyBytes bounds Send.body (UTF-8 bytes). Default 4096. Over it: the
	// Send is refused with an Error event INVALID_ARGUMENT, field "send.body";
	// the stream stays open.
	MaxBodyBytes int
	// MaxRoomsPerStream bounds how many rooms one stream may have joined at
	// once. Default 16. Over it: the Join is refused with an Error event
	// RESOURCE_EXHAUSTED, field "join.room"; the stream stays open.
	MaxRoomsPerStream int
	// SendRate is the per-user token refill rate for Sends, in messages per
	// second, shared by all of the user's streams. Default 50; <= 0 means
	// unlimited. Over it: the Send is refused with an Error event
	// RESOURCE_EXHAUSTED, field "send", carrying the client_msg_id.
	SendRate float64
	// SendBurst is the per-user token bucket size. Default 100.
	SendBurst int
	// FloodFactor and FloodWindow decide when a sender is a flooder: a stream
	// that collects more than FloodFactor x SendBurst rate-limit refusals
	// within one FloodWindow (a fixed window that starts at the first refusal)
	// is ended with RESOURCE_EXHAUSTED. Defaults 10 and 10s; FloodFactor <= 0
	// disables the cut (refusals only).
	FloodFactor int
	// FloodWindow: see FloodFactor.
	FloodWindow time.Duration
	// QueueMessages bounds one stream's outbound queue (messages, acks,
	// presence, ...; live messages of a resuming room wait there while its
	// replay is written). Default 1024. Over it: the stream
	// ends with RESOURCE_EXHAUSTED "slow consumer: ...; resume from seq X"
	// and bidikit_slow_consumer_cuts_total is incremented.
	QueueMessages int
	// QueueBytes bounds the same queue by encoded size. Default 4 MiB. Over
	// it: as for QueueMessages.
	QueueBytes int
	// TypingInterval is the minimum spacing of relayed Typing indicators per
	// user per room. Default 1s. Extra indicators inside the interval are
	// dropped silently (no Error event).
	TypingInterval time.Duration
	// History is how many messages per room the in-memory store retains (the
	// server assembly passes it to store.NewMemory; New does not use it).
	// Default 10,000. A resume older than what is retained is answered with
	// Joined.resume_complete = false.
	History int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:      4096,
		MaxRoomsPerStream: 16,
		SendRate:          50,
		SendBurst:         100,
		FloodFactor:       10,
		FloodWindow:       10 * time.Second,
		QueueMessages:     1024,
		QueueBytes:        4 << 20,
		TypingInterval:    time.Second,
		History:           10_000,
	}
}

// RegisterFlags binds the config to --chat-* flags on fs, with the current
// field values as defaults.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.MaxBodyBytes, "chat-max-body-bytes", c.MaxBodyBytes, "chat: largest message body in bytes; larger Sends get an INVALID_ARGUMENT error event")
	fs.IntVar(&c.MaxRoomsPerStream, "chat-max-rooms-per-stream", c.MaxRoomsPerStream, "chat: most rooms one stream may join; further Joins get a RESOURCE_EXHAUSTED error event")
	fs.Float64Var(&c.SendRate, "chat-send-rate", c.SendRate, "chat: messages per second per user (token refill; <= 0 = unlimited); over it Sends get a RESOURCE_EXHAUSTED error event")
	fs.IntVar(&c.SendBurst, "chat-send-burst", c.SendBurst, "chat: token bucket size per user")
	fs.IntVar(&c.FloodFactor, "chat-flood-factor", c.FloodFactor, "chat: end a stream with RESOURCE_EXHAUSTED after more than factor x burst rate-limit refusals within --chat-flood-window (<= 0 = never)")
	fs.DurationVar(&c.FloodWindow, "chat-flood-window", c.FloodWindow, "chat: window for --chat-flood-factor")
	fs.IntVar(&c.QueueMessages, "chat-queue-messages", c.QueueMessages, "chat: per-stream send queue bound in messages; over it the stream ends with RESOURCE_EXHAUSTED (slow consumer)")
	fs.IntVar(&c.QueueBytes, "chat-queue-bytes", c.QueueBytes, "chat: per-stream send queue bound in bytes; over it the stream ends with RESOURCE_EXHAUSTED (slow consumer)")
	fs.DurationVar(&c.TypingInterval, "chat-typing-interval", c.TypingInterval, "chat: at most one relayed typing indicator per user per room per interval; extra ones are dropped")
	fs.IntVar(&c.History, "chat-history", c.History, "chat: messages retained per room by the in-memory store")
	validate.BindFlag(fs, "chat-max-body-bytes", "Chat.MaxBodyBytes")
	validate.BindFlag(fs, "chat-max-rooms-per-stream", "Chat.MaxRoomsPerStream")
	validate.BindFlag(fs, "chat-send-rate", "Chat.SendRate")
	validate.BindFlag(fs, "chat-send-burst", "Chat.SendBurst")
	validate.BindFlag(fs, "chat-flood-factor", "Chat.FloodFactor")
	validate.BindFlag(fs, "chat-flood-window", "Chat.FloodWindow")
	validate.BindFlag(fs, "chat-queue-messages", "Chat.QueueMessages")
	validate.BindFlag(fs, "chat-queue-bytes", "Chat.QueueBytes")
	validate.BindFlag(fs, "chat-typing-interval", "Chat.TypingInterval")
	validate.BindFlag(fs, "chat-history", "Chat.History")
}

// check reports the first unusable value as a *validate.SettingError
// naming its field.
func (c Config) check() error {
	switch {
	case c.MaxBodyBytes < 1:
		return validate.Settingf("Chat.MaxBodyBytes", "is %d, want >= 1 (the max body bytes of a Send)", c.MaxBodyBytes)
	case c.MaxRoomsPerStream < 1:
		return validate.Settingf("Chat.MaxRoomsPerStream", "is %d, want >= 1", c.MaxRoomsPerStream)
	case c.SendBurst < 1:
		return validate.Settingf("Chat.SendBurst", "is %d, want >= 1", c.SendBurst)
	case c.FloodFactor > 0 && c.FloodWindow <= 0:
		return &validate.SettingError{Field: "Chat.FloodWindow", Also: []string{"Chat.FloodFactor"},
			Reason: fmt.Sprintf("are %v and %d: a flood factor > 0 needs a window > 0", c.FloodWindow, c.FloodFactor)}
	case c.QueueMessages < 1:
		return validate.Settingf("Chat.QueueMessages", "is %d, want >= 1", c.QueueMessages)
	case c.QueueBytes < 1024:
		return validate.Settingf("Chat.QueueBytes", "is %d, want >= 1024", c.QueueBytes)
	case c.QueueBytes < c.MaxBodyBytes+1024:
		return &validate.SettingError{Field: "Chat.QueueBytes", Also: []string{"Chat.MaxBodyBytes"},
			Reason: fmt.Sprintf("are %d and %d: the queue must exceed the body bound by at least 1024", c.QueueBytes, c.MaxBodyBytes)}
	case c.TypingInterval < 0:
		return validate.Settingf("Chat.TypingInterval", "is %v, want >= 0", c.TypingInterval)
	}
	return nil
}
