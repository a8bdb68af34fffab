package chat

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/store"
	"github.com/bidikit/bidikit/reference/validate"
)

func validName(field, v string) error { return validate.Name(field, v) }
func validID(field, v string) error   { return validate.ID(field, v, maxClientMsgIDBytes) }
func validBody(field, v string, max int) error {
	return validate.Text(field, v, max, true)
}

// errRoomFailed marks commits that follow a failed one in the same room.
var errRoomFailed = errors.New("an earlier message of this room failed to commit")

// load reads r's head from the store on first use, so seq continues after a
// restart.
func (s *Service) load(r *room) error {
	r.seqMu.Lock()
	defer r.seqMu.Unlock()
	if r.loaded {
		return nil
	}
	h, err := s.st.Head(r.stream)
	if err != nil {
		return err
	}
	r.next = h.Last
	r.mu.Lock()
	r.committed = h.Last
	r.mu.Unlock()
	r.loaded = true
	return nil
}

// join adds ss to the room called name and queues Joined (and, for a resume,
// a replay job) to it. The membership is registered, the head read and the
// job queued under the room's lock, so the replay (resume_after, head] and
// the live messages (> head, queued behind the job) meet without gap or
// overlap. Returns nil when the Join failed (an
// Error event was queued).
func (s *Service) join(ss *session, name string, resumeAfter *uint64) *membership {
	r := s.rooms.acquire(name)
	h, err := s.headFor(r)
	if err != nil {
		s.rooms.release(r)
		ss.reject(codes.Unavailable, "join.room", name, "",
			fmt.Sprintf("room %q could not be read from storage: %v", name, err))
		return nil
	}
	m := &membership{sess: ss, room: r}
	joined := &chatv1.Joined{Room: name, ResumeComplete: true, OldestRetainedSeq: h.Oldest}
	var job *replayJob

	r.mu.Lock()
	head := r.committed
	joined.HeadSeq = head
	if s.shared != nil && resumeAfter != nil && *resumeAfter > head {
		// This instance's feed lags the position the member saw on another
		// instance: do not deliver what it saw again.
		m.skip = *resumeAfter
	}
	if resumeAfter != nil && *resumeAfter < head {
		from := *resumeAfter + 1
		if h.Oldest == 0 || from < h.Oldest {
			joined.ResumeComplete = false
			from = h.Oldest
			if from == 0 {
				from = head + 1
			}
		}
		if from <= head {
			joined.ReplayFrom = from
			job = &replayJob{m: m, from: from, to: head}
		}
	}
	r.addMember(m)
	joined.Members = r.memberList()
	ss.pushEvent(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{Joined: joined}})
	if job != nil {
		ss.push(item{job: job}, controlItemBytes)
	}
	r.mu.Unlock()
	s.mMembers.Inc()
	return m
}

// headFor loads r and returns the store's view of its log (for Oldest).
func (s *Service) headFor(r *room) (store.Head, error) {
	if s.shared != nil {
		return s.headShared(r)
	}
	if err := s.load(r); err != nil {
		return store.Head{}, err
	}
	return s.st.Head(r.stream)
}

// leave removes m from its room; with confirm, Left is queued to m's stream.
func (s *Service) leave(m *membership, confirm bool) {
	r := m.room
	r.mu.Lock()
	r.removeMember(m)
	if confirm {
		m.sess.pushEvent(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Left{Left: &chatv1.Left{Room: r.name}}})
	}
	r.mu.Unlock()
	s.rooms.release(r)
	s.mMembers.Dec()
}

// typing relays an indicator to the other users' streams in m's room, at
// most one per user per room per TypingInterval; extra ones are dropped.
func (s *Service) typing(m *membership, active bool) {
	r, user := m.room, m.sess.user
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.typing[user]; ok && now.Sub(last) < s.cfg.TypingInterval {
		return
	}
	r.typing[user] = now
	ev := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Typing{Typing: &chatv1.TypingNotice{
		Room: r.name, User: user, Active: active}}}
	r.broadcastEvent(ev, func(o *membership) bool { return o.sess.user == user })
}

func ackEvent(room, id string, seq uint64, dup bool, nanos int64) *chatv1.ServerEvent {
	return &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{
		Room: room, ClientMsgId: id, Seq: seq, Duplicate: dup, ServerUnixNanos: nanos}}}
}

// send orders one validated Send: under the room's seqMu it checks for a
// resend (in flight, then committed), assigns the next seq and appends to
// the store. The ack and the broadcast happen in commit, after the store
// reported the commit.
func (s *Service) send(ss *session, m *membership, snd *chatv1.Send) {
	if s.shared != nil {
		s.sendShared(ss, m, snd)
		return
	}
	r := m.room
	id := snd.GetClientMsgId()
	key := ss.user + "\x00" + id

	r.seqMu.Lock()
	defer r.seqMu.Unlock()
	if r.failed.Load() {
		ss.reject(codes.Unavailable, "send", r.name, id,
			fmt.Sprintf("room %q refuses messages after a storage failure; rejoin it later and resend", r.name))
		return
	}
	r.mu.Lock()
	if p := r.inflight[key]; p != nil {
		p.dups = append(p.dups, ss)
		ss.st.CommitStarted()
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	sseq, session := snd.GetSenderSeq(), snd.GetSenderSession()
	writer := writerOf(ss.user, session)
	top, seen := r.newest[writer]
	if seen && sseq > top {
		// Newer than anything this writer has stored: not a resend.
	} else if seq, ok, err := s.st.FindKey(r.stream, key); err != nil {
		ss.reject(codes.Unavailable, "send", r.name, id,
			fmt.Sprintf("could not check client_msg_id %q for a resend: %v", id, err))
		return
	} else if ok {
		ss.pushEvent(ackEvent(r.name, id, seq, true, time.Now().UnixNano()))
		return
	} else if seen && session != "" {
		ss.reject(codes.FailedPrecondition, "send.sender_seq", r.name, id, fmt.Sprintf(
			"not stored, and never will be: your message with sender_seq %d is already ordered in room %q (sender_session %q); storing sender_seq %d after it would break your order",
			top, r.name, session, sseq))
		return
	}

	r.next++
	now := time.Now().UnixNano()
	raw, err := proto.Marshal(&chatv1.Message{
		Room: r.name, Seq: r.next, Sender: ss.user, ClientMsgId: id, SenderSeq: snd.GetSenderSeq(),
		Body: snd.GetBody(), ServerUnixNanos: now, ClientSentUnixNanos: snd.GetClientSentUnixNanos(),
	})
	if err != nil { // cannot happen for validated fields; never panic
		r.next--
		ss.reject(codes.InvalidArgument, "send", r.name, id, fmt.Sprintf("message cannot be encoded: %v", err))
		return
	}
	if r.newest == nil {
		r.newest = map[string]uint64{}
	}
	r.newest[writer] = max(top, sseq)
	p := &pending{key: key, clientMsgID: id, seq: r.next, sender: ss}
	r.mu.Lock()
	r.inflight[key] = p
	r.mu.Unlock()
	ss.st.CommitStarted()
	s.rooms.retain(r)
	s.st.Append(store.Record{Stream: r.stream, Seq: p.seq, Key: key, UnixNanos: now, Payload: raw},
		func(err error) { s.commit(r, p, raw, now, err) })
}

// commit is the store's callback for one Send. It runs on the store's writer
// goroutine (or inside Append, under r.seqMu, with the memory store), so it
// takes r.mu but never seqMu, and never blocks: acks and broadcasts only
// push into bounded queues.
func (s *Service) commit(r *room, p *pending, raw []byte, nanos int64, err error) {
	if err == nil && r.failed.Load() {
		err = errRoomFailed
	}
	r.mu.Lock()
	delete(r.inflight, p.key)
	if err != nil {
		r.failed.Store(true)
		ev := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Error{Error: &chatv1.Error{
			Code:        uint32(codes.Unavailable),
			Message:     fmt.Sprintf("message not stored (%v); resend it with the same client_msg_id after rejoining", err),
			Field:       "send",
			Room:        r.name,
			ClientMsgId: p.clientMsgID,
		}}}
		p.sender.pushEvent(ev)
		for _, d := range p.dups {
			d.pushEvent(ev)
		}
	} else {
		r.committed = p.seq
		p.sender.pushEvent(ackEvent(r.name, p.clientMsgID, p.seq, false, nanos))
		if len(p.dups) > 0 {
			dup := ackEvent(r.name, p.clientMsgID, p.seq, true, nanos)
			for _, d := range p.dups {
				d.pushEvent(dup)
			}
		}
		it := item{raw: raw, room: r.name, seq: p.seq}
		size := len(raw) + rawItemOverhead
		for _, m := range r.members {
			m.deliver(it, size)
		}
	}
	r.mu.Unlock()

	if err != nil {
		s.log.Warn("message commit failed", "room", r.name, "seq", p.seq, "err", err)
	} else {
		s.mCommitted.Inc()
	}
	p.sender.inflightDone()
	for _, d := range p.dups {
		d.inflightDone()
	}
	s.rooms.release(r)
}
