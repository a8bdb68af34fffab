// Package gamehub shares game matches between reference-server instances
// through NATS: it implements game.MatchHub. Ownership of a match is a key
// in a JetStream KeyValue bucket whose TTL is the lease (the instance whose
// Create succeeds owns the match and renews with a revision-checked Update;
// JetStream, not this package, decides who wins). Match traffic is core
// NATS (at most once; package game repairs gaps):
//
//	KV       <Bucket>/<M>          value: the owner's instance id
//	request  bidikit.game.<M>.ctl  relay -> owner (join, full-frame request)
//	publish  bidikit.game.<M>.in   relay -> owner (input batches)
//	publish  bidikit.game.<M>.tick owner -> relays (one message per tick)
//
// M is the match name escaped by cluster.Token.
package gamehub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidikit/bidikit/reference/cluster"
	"github.com/bidikit/bidikit/reference/game"
)

// Config describes the hub. Start from DefaultConfig.
type Config struct {
	// Bucket is the KeyValue bucket holding match owners. Default
	// "bidikit_game_owners".
	Bucket string
	// Lease is how long an owner keeps a match without renewing (the
	// bucket's TTL); owners renew every Lease/3, relays take a match over
	// after a Lease without ticks. Default 3s. Every instance of a cluster
	// must use the same value.
	Lease time.Duration
	// Timeout bounds JetStream API calls made by New. Default 5s.
	Timeout time.Duration
	// Replicas is the bucket's replication factor (3 for a JetStream
	// cluster). Default 1.
	Replicas int
	// FileStorage keeps the bucket on disk; by default it is in memory
	// (leases are short-lived: after a NATS restart owners fail to renew
	// and relays take over).
	FileStorage bool
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Bucket: "bidikit_game_owners", Lease: 3 * time.Second, Timeout: 5 * time.Second, Replicas: 1}
}

func (c Config) check() error {
	switch {
	case c.Bucket == "" || strings.ContainsAny(c.Bucket, ".*> \t"):
		return fmt.Errorf("gamehub config: bucket %q must be a non-empty name without '.', '*', '>' or spaces", c.Bucket)
	case c.Lease < 100*time.Millisecond:
		return fmt.Errorf("gamehub config: lease is %v, want >= 100ms", c.Lease)
	case c.Timeout <= 0:
		return fmt.Errorf("gamehub config: timeout is %v, want > 0", c.Timeout)
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("gamehub config: replicas is %d, want 1..5", c.Replicas)
	}
	return nil
}

// Hub is a game.MatchHub over one NATS connection, which the caller owns
// (and closes after the game service's Close). Its methods are safe for
// concurrent use.
type Hub struct {
	nc  *nats.Conn
	kv  jetstream.KeyValue
	cfg Config
	id  string
	log *slog.Logger
}

var _ game.MatchHub = (*Hub)(nil)

// New returns a Hub on nc, creating (or updating) the owners bucket. log may
// be nil (discard).
func New(nc *nats.Conn, cfg Config, log *slog.Logger) (*Hub, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("gamehub: nil NATS connection")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(cfg.Timeout))
	if err != nil {
		return nil, fmt.Errorf("gamehub: JetStream on %s: %w", nc.ConnectedUrlRedacted(), err)
	}
	kv, err := ownersBucket(js, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("gamehub: owners bucket %q on %s (is JetStream enabled?): %w", cfg.Bucket, nc.ConnectedUrlRedacted(), err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	if name := nc.Opts.Name; name != "" {
		id = strings.NewReplacer(".", "_", " ", "_", "*", "_", ">", "_").Replace(name) + "-" + id
	}
	return &Hub{nc: nc, kv: kv, cfg: cfg, id: id, log: log}, nil
}

// setupWait bounds how long New keeps trying to create or open the owners
// bucket: in a JetStream cluster that has just formed (every instance
// starting at once), a replicated stream needs its own leader elected
// before it answers, which can take several seconds.
const setupWait = time.Minute

// ownersBucket opens the owners bucket, creating it when missing and
// updating it when its TTL (the lease) differs, retrying each step (bounded
// by cfg.Timeout per call and setupWait in all).
func ownersBucket(js jetstream.JetStream, cfg Config, log *slog.Logger) (jetstream.KeyValue, error) {
	st := jetstream.MemoryStorage
	if cfg.FileStorage {
		st = jetstream.FileStorage
	}
	kvc := jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "bidikit game match owners (one key per match; TTL = ownership lease)",
		History:     1,
		TTL:         cfg.Lease,
		Storage:     st,
		Replicas:    cfg.Replicas,
	}
	deadline := time.Now().Add(setupWait)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
		kv, err := js.KeyValue(ctx, cfg.Bucket)
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
			kv, err = js.CreateKeyValue(ctx, kvc)
			if errors.Is(err, jetstream.ErrBucketExists) {
				err = fmt.Errorf("created by another instance meanwhile: %w", err) // open it next round
			}
		case err == nil:
			var status jetstream.KeyValueStatus
			if status, err = kv.Status(ctx); err == nil && status.TTL() != cfg.Lease {
				log.Info("gamehub: owners bucket lease changed", "bucket", cfg.Bucket, "from", status.TTL(), "to", cfg.Lease)
				kv, err = js.UpdateKeyValue(ctx, kvc)
			}
		}
		cancel()
		if err == nil {
			return kv, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("after %d attempts in %v: %w", attempt, setupWait, err)
		}
		log.Warn("gamehub: owners bucket not ready yet; retrying", "bucket", cfg.Bucket, "attempt", attempt, "err", err)
		time.Sleep(500 * time.Millisecond)
	}
}

// ID implements game.MatchHub: the connection's name plus a random suffix.
func (h *Hub) ID() string { return h.id }

// Lease implements game.MatchHub.
func (h *Hub) Lease() time.Duration { return h.cfg.Lease }

func subject(match, kind string) string { return "bidikit.game." + cluster.Token(match) + "." + kind }

// Claim implements game.MatchHub with a KV Create of the match's key.
func (h *Hub) Claim(ctx context.Context, match string) (game.Ownership, bool, error) {
	key := cluster.Token(match)
	rev, err := h.kv.Create(ctx, key, []byte(h.id))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("claim match %q (key %s in bucket %s): %w", match, key, h.cfg.Bucket, err)
	}
	return &lease{h: h, key: key, rev: rev}, true, nil
}

// lease is a held key; its methods are called from one goroutine.
type lease struct {
	h   *Hub
	key string
	rev uint64
}

// Renew implements game.Ownership with a revision-checked Update.
func (l *lease) Renew(ctx context.Context) error {
	rev, err := l.h.kv.Update(ctx, l.key, []byte(l.h.id), l.rev)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%w: key %s of bucket %s changed or expired (revision %d): %v", game.ErrLeaseLost, l.key, l.h.cfg.Bucket, l.rev, err)
		}
		return fmt.Errorf("renew key %s of bucket %s: %w", l.key, l.h.cfg.Bucket, err)
	}
	l.rev = rev
	return nil
}

// Release implements game.Ownership: a Delete that only succeeds while the
// key is still this lease's.
func (l *lease) Release(ctx context.Context) error {
	if err := l.h.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev)); err != nil {
		return fmt.Errorf("release key %s of bucket %s: %w", l.key, l.h.cfg.Bucket, err)
	}
	return nil
}

// subscribed waits (bounded) until the server has the new subscriptions, so
// that requests sent right after reach them.
func (h *Hub) subscribed() {
	if err := h.nc.FlushTimeout(h.cfg.Lease); err != nil {
		h.log.Debug("gamehub: flush after subscribing", "err", err)
	}
}

// Serve implements game.MatchHub with two core subscriptions.
func (h *Hub) Serve(match string, control func([]byte) []byte, inputs func([]byte)) (func(), error) {
	ctl, err := h.nc.Subscribe(subject(match, "ctl"), func(m *nats.Msg) {
		if err := m.Respond(control(m.Data)); err != nil {
			h.log.Debug("gamehub: answering a control request", "match", match, "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subject(match, "ctl"), err)
	}
	in, err := h.nc.Subscribe(subject(match, "in"), func(m *nats.Msg) { inputs(m.Data) })
	if err != nil {
		_ = ctl.Unsubscribe()
		return nil, fmt.Errorf("subscribe to %s: %w", subject(match, "in"), err)
	}
	h.subscribed()
	return func() {
		_ = ctl.Unsubscribe()
		_ = in.Unsubscribe()
	}, nil
}

// Follow implements game.MatchHub with a core subscription.
func (h *Hub) Follow(match string, fn func([]byte)) (func(), error) {
	sub, err := h.nc.Subscribe(subject(match, "tick"), func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subject(match, "tick"), err)
	}
	h.subscribed()
	return func() { _ = sub.Unsubscribe() }, nil
}

// Request implements game.MatchHub.
func (h *Hub) Request(ctx context.Context, match string, req []byte) ([]byte, error) {
	m, err := h.nc.RequestWithContext(ctx, subject(match, "ctl"), req)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("%w (%s): %v", game.ErrNoOwner, subject(match, "ctl"), err)
	}
	if err != nil {
		return nil, fmt.Errorf("request on %s: %w", subject(match, "ctl"), err)
	}
	return m.Data, nil
}

// PublishTick implements game.MatchHub.
func (h *Hub) PublishTick(match string, b []byte) error {
	return h.nc.Publish(subject(match, "tick"), b)
}

// PublishInputs implements game.MatchHub.
func (h *Hub) PublishInputs(match string, b []byte) error {
	return h.nc.Publish(subject(match, "in"), b)
}
