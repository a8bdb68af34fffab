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

// sharedHeadTimeout bounds reading a room's head for a Join. The Join holds
// up its stream's other events meanwhile, so while a JetStream room's stream
// has no leader (seconds, after a JetStream server died) the Join is answered
// with UNAVAILABLE soon, and the client joins again after a back-off.
const sharedHeadTimeout = 3 * time.Second

// replayChunk is how many messages one SharedLog.Range call of a replay
// reads (with JetStream each call costs a consumer round trip).
const replayChunk = 1024

// NewShared returns a chat service whose rooms live in lg, shared with other
// instances, counting into m. acl may be nil (every room open) and log may
// be nil (discard). Presence, typing indicators and Joined.members are
// per instance (they are not relayed through lg). The caller owns lg.
func NewShared(cfg Config, lg SharedLog, m *metrics.Set, acl ACL, log *slog.Logger) (*Service, error) {
	if lg == nil {
		return nil, errors.New("chat: nil shared log")
	}
	return newService(cfg, lg, waitPlacer{lg}, m, acl, log)
}

// load reads r's head from the log and starts r's feed after
// it. Caller holds r.seqMu and r is not loaded.
func (s *Service) load(r *room) (store.Head, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sharedHeadTimeout)
	defer cancel()
	h, err := s.lg.Head(ctx, r.name)
	if err != nil {
		return store.Head{}, err
	}
	r.mu.Lock()
	r.committed = h.Last
	r.mu.Unlock()
	stop, err := s.lg.Follow(r.name, h.Last,
		func(seq uint64, payload []byte) { s.deliver(r, seq, payload) },
		func(err error) { s.log.Warn("room feed problem", "room", r.name, "err", err) })
	if err != nil {
		return store.Head{}, err
	}
	r.stopFeed = stop
	r.loaded = true
	return h, nil
}

// headFor loads r (starting its feed) on first use and returns the log's
// bounds (for Joined.oldest_retained_seq).
func (s *Service) headFor(r *room) (store.Head, error) {
	r.seqMu.Lock()
	if !r.loaded {
		h, err := s.load(r)
		r.seqMu.Unlock()
		return h, err
	}
	r.seqMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), sharedHeadTimeout)
	defer cancel()
	return s.lg.Head(ctx, r.name)
}

// withSeq returns payload (an encoded Message without seq) with seq set:
// protobuf accepts fields in any order, so the field is appended.
func withSeq(payload []byte, seq uint64) []byte {
	b := make([]byte, 0, len(payload)+1+protowire.SizeVarint(seq))
	b = append(b, payload...)
	b = protowire.AppendTag(b, 2, protowire.VarintType) // Message.seq
	return protowire.AppendVarint(b, seq)
}

// deliver relays one message of r's feed to r's local members. It runs
// on the feed's goroutine and never blocks. Under r.mu it advances
// r.committed, so a member registered under r.mu gets exactly the messages
// after the head it was told.
func (s *Service) deliver(r *room, seq uint64, payload []byte) {
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

// send hands one validated Send to its writer's chain (order.go), which
// places it in the log once the writer's earlier Sends are placed. The ack
// is queued when the log reports the message committed (its seq is the
// log's); the message itself reaches every member, the sender included,
// through the room's feed, so every member (on every instance) sees the
// same order.
func (s *Service) send(ss *session, m *membership, snd *chatv1.Send) {
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
	s.enqueue(r, &outgoing{svc: s, r: r, ss: ss, m: m, id: id, key: ss.user + "\x00" + id, sseq: snd.GetSenderSeq(),
		session: snd.GetSenderSession(), raw: raw, now: now})
}

// readLog appends to recs the next chunk of r's log from seq from (at most
// to). A replay holds up the stream's writer: while the room's log cannot
// be read (a JetStream stream without a leader) it fails soon, and the
// stream ends with UNAVAILABLE.
func (s *Service) readLog(ctx context.Context, r *room, from, to uint64, recs *[]store.Record) error {
	ctx, cancel := context.WithTimeout(ctx, sharedHeadTimeout)
	defer cancel()
	return s.lg.Range(ctx, r.name, from, min(from+replayChunk-1, to), func(seq uint64, payload []byte) error {
		*recs = append(*recs, store.Record{Seq: seq, Payload: withSeq(payload, seq)})
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
