package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/store"
)

// SharedLog is a room log that several server instances share (package
// cluster implements it over NATS JetStream). It, not the service, assigns
// seqs, keeps messages and de-duplicates resends; every instance follows it
// and relays what it delivers, so members on every instance see one order.
//
// Payloads are encoded chatv1.Messages without seq (the log's sequence is
// added on delivery). Methods are safe for concurrent use.
type SharedLog interface {
	// Head returns the room's log bounds, creating the empty log on first use.
	Head(ctx context.Context, room string) (store.Head, error)
	// Follow delivers every message with seq > after, in seq order, one at
	// a time on one goroutine, until stop is called. fn must not block.
	// onErr hears about feed problems.
	Follow(room string, after uint64, fn func(seq uint64, payload []byte), onErr func(error)) (stop func(), err error)
	// Publish appends payload under the de-duplication key key; done is
	// called exactly once (in Publish order, never blocking) with the seq,
	// with duplicate and the first copy's seq for a known key, or with an
	// error.
	Publish(room, key string, payload []byte, done func(seq uint64, duplicate bool, err error))
	// Range calls fn for the retained messages with from <= seq <= to, in
	// order, stopping at fn's first error.
	Range(ctx context.Context, room string, from, to uint64, fn func(seq uint64, payload []byte) error) error
	// PublishAfter is Publish for a message of writer (a sender and its
	// sender_session) that must directly follow writer's newest stored
	// message, at seq writerLast (0: writer has none): when writer's newest
	// message is elsewhere, nothing is stored and done gets an error
	// wrapping store.ErrConflict (unless key is a resend the log answers
	// as a duplicate).
	PublishAfter(room, writer, key string, payload []byte, writerLast uint64, done func(seq uint64, duplicate bool, err error))
	// WriterLast returns writer's newest stored message: seq and payload,
	// found false when there is none. It may come from a copy that lags
	// (an older message): PublishAfter's condition, not this read, keeps
	// the order.
	WriterLast(ctx context.Context, room, writer string) (seq uint64, payload []byte, found bool, err error)
	// WriterKey returns the seq of writer's message stored under key, among
	// writer's messages up to seq upTo, if the log still retains it.
	WriterKey(ctx context.Context, room, writer, key string, upTo uint64) (seq uint64, found bool, err error)
}

// sharedHeadTimeout bounds reading a room's head for a Join. The Join holds
// up its stream's other events meanwhile, so while the room's stream has
// no leader (seconds, after a JetStream server died) the Join is answered
// with UNAVAILABLE soon, and the client joins again after a back-off.
const sharedHeadTimeout = 3 * time.Second

// sharedReplayChunk is how many messages one SharedLog.Range call of a replay
// reads (each call costs a consumer round trip, so chunks are larger than
// with a local store).
const sharedReplayChunk = 1024

// NewShared returns a chat service whose rooms live in lg, shared with other
// instances, counting into m. acl may be nil (every room open) and log may
// be nil (discard). Presence, typing indicators and Joined.members are
// per instance (they are not relayed through lg). The caller owns lg.
func NewShared(cfg Config, lg SharedLog, m *metrics.Set, acl ACL, log *slog.Logger) (*Service, error) {
	if lg == nil {
		return nil, errors.New("chat: nil shared log")
	}
	return newService(cfg, nil, lg, m, acl, log)
}

// loadShared reads r's head from the shared log and starts r's feed after
// it. Caller holds r.seqMu and r is not loaded.
func (s *Service) loadShared(r *room) (store.Head, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sharedHeadTimeout)
	defer cancel()
	h, err := s.shared.Head(ctx, r.name)
	if err != nil {
		return store.Head{}, err
	}
	r.mu.Lock()
	r.committed = h.Last
	r.mu.Unlock()
	stop, err := s.shared.Follow(r.name, h.Last,
		func(seq uint64, payload []byte) { s.deliverShared(r, seq, payload) },
		func(err error) { s.log.Warn("room feed problem", "room", r.name, "err", err) })
	if err != nil {
		return store.Head{}, err
	}
	r.stopFeed = stop
	r.loaded = true
	return h, nil
}

// headShared loads r (starting its feed) on first use and returns the
// shared log's bounds.
func (s *Service) headShared(r *room) (store.Head, error) {
	r.seqMu.Lock()
	if !r.loaded {
		h, err := s.loadShared(r)
		r.seqMu.Unlock()
		return h, err
	}
	r.seqMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), sharedHeadTimeout)
	defer cancel()
	return s.shared.Head(ctx, r.name)
}

// withSeq returns payload (an encoded Message without seq) with seq set:
// protobuf accepts fields in any order, so the field is appended.
func withSeq(payload []byte, seq uint64) []byte {
	b := make([]byte, 0, len(payload)+1+protowire.SizeVarint(seq))
	b = append(b, payload...)
	b = protowire.AppendTag(b, 2, protowire.VarintType) // Message.seq
	return protowire.AppendVarint(b, seq)
}

// deliverShared relays one message of r's feed to r's local members. It runs
// on the feed's goroutine and never blocks. Under r.mu it advances
// r.committed, so a member registered under r.mu gets exactly the messages
// after the head it was told.
func (s *Service) deliverShared(r *room, seq uint64, payload []byte) {
	raw := withSeq(payload, seq)
	it := item{raw: raw, room: r.name, seq: seq}
	size := len(raw) + rawItemOverhead
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq <= r.committed {
		return
	}
	r.committed = seq
	for _, m := range r.members {
		if seq > m.skip {
			m.deliver(it, size)
		}
	}
}

// sendShared hands one validated Send to its writer's chain (order.go),
// which publishes it to the shared log once the writer's earlier Sends on
// this instance are settled. The ack is queued when the log confirmed the
// message is stored (its seq is the log's); the message itself reaches every
// member, the sender included, through the room's feed, so every instance
// delivers the same order.
func (s *Service) sendShared(ss *session, m *membership, snd *chatv1.Send) {
	r := m.room
	id := snd.GetClientMsgId()
	now := time.Now().UnixNano()
	raw, err := proto.Marshal(&chatv1.Message{
		Room: r.name, Sender: ss.user, ClientMsgId: id, SenderSeq: snd.GetSenderSeq(),
		Body: snd.GetBody(), ServerUnixNanos: now, ClientSentUnixNanos: snd.GetClientSentUnixNanos(),
	})
	if err != nil { // cannot happen for validated fields; never panic
		ss.reject(codes.InvalidArgument, "send", r.name, id, fmt.Sprintf("message cannot be encoded: %v", err))
		return
	}
	ss.st.CommitStarted()
	s.rooms.retain(r)
	s.enqueue(r, &outgoing{ss: ss, m: m, id: id, key: ss.user + "\x00" + id, sseq: snd.GetSenderSeq(),
		session: snd.GetSenderSession(), raw: raw, now: now})
}

// readLog appends to recs the next chunk of r's log from seq from (at most
// to), from the store or the shared log.
func (s *Service) readLog(ctx context.Context, r *room, from, to uint64, recs *[]store.Record) error {
	if s.shared == nil {
		return s.st.Range(r.stream, from, min(from+replayChunk-1, to), func(rec store.Record) error {
			*recs = append(*recs, rec)
			return nil
		})
	}
	// A replay holds up the stream's writer: while the room's stream has no
	// leader it fails soon, and the stream ends with UNAVAILABLE.
	ctx, cancel := context.WithTimeout(ctx, sharedHeadTimeout)
	defer cancel()
	return s.shared.Range(ctx, r.name, from, min(from+sharedReplayChunk-1, to), func(seq uint64, payload []byte) error {
		*recs = append(*recs, store.Record{Stream: r.stream, Seq: seq, Payload: withSeq(payload, seq)})
		return nil
	})
}

// senderSeqOf reads Message.sender_seq from an encoded Message.
func senderSeqOf(payload []byte) (uint64, error) {
	var m chatv1.Message
	if err := proto.Unmarshal(payload, &m); err != nil {
		return 0, err
	}
	return m.GetSenderSeq(), nil
}
