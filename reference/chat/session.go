package chat

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bidikit/bidikit/reference/validate"
	"github.com/bidikit/bidikit/reference/wire"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/store"
	"github.com/bidikit/bidikit/reference/streamhost"
)

// maxClientMsgIDBytes bounds Send.client_msg_id (the contract says 1-128).
const maxClientMsgIDBytes = 128

// maxSenderSessionBytes bounds Send.sender_session (the contract says 1-64
// when set).
const maxSenderSessionBytes = 64

// session is the chat side of one Connect stream (a streamhost.Handler).
//
// Ownership: rooms and flood belong to the receive loop (Receive, Close);
// the writer alone calls Send (Write, Overflowed) and writes sent (under
// sentMu); the stream's queue is pushed to by anyone.
type session struct {
	svc    *Service
	st     *streamhost.Stream[item]
	user   string
	stream chatv1.ChatService_ConnectServer
	lim    *rate.Limiter

	rooms map[string]*membership
	flood streamhost.FloodMeter

	sentMu sync.Mutex
	sent   map[string]uint64     // room -> last seq handed to the transport
	msgs   [][]byte              // the writer's scratch list of encoded messages
	acks   []*chatv1.ServerEvent // the writer's scratch list of acks moved after a batch
}

func newSession(s *Service, st *streamhost.Stream[item], stream chatv1.ChatService_ConnectServer) *session {
	return &session{
		svc:    s,
		st:     st,
		user:   st.User(),
		stream: stream,
		lim:    s.lim.Acquire(st.User()),
		rooms:  map[string]*membership{},
		sent:   map[string]uint64{},
	}
}

// push queues it for the writer without blocking; a full queue cuts the
// stream as a slow consumer.
func (ss *session) push(it item, size int) { ss.st.Push(it, size) }

func (ss *session) pushEvent(ev *chatv1.ServerEvent) { ss.push(item{ev: ev}, controlItemBytes) }

// inflightDone answers one of this stream's Sends in flight.
func (ss *session) inflightDone() { ss.st.CommitDone() }

// Overflowed is the final status of a cut stream, naming the bound and
// where to resume each joined room.
func (ss *session) Overflowed() error {
	cfg := &ss.svc.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "slow consumer: send queue over %d messages / %d bytes", cfg.QueueMessages, cfg.QueueBytes)
	ss.sentMu.Lock()
	rooms := make([]string, 0, len(ss.sent))
	for r := range ss.sent {
		rooms = append(rooms, r)
	}
	slices.Sort(rooms)
	for i, r := range rooms {
		if i == 0 {
			b.WriteString("; resume from ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "seq %d in room %q", ss.sent[r], r)
	}
	ss.sentMu.Unlock()
	return status.Error(codes.ResourceExhausted, b.String())
}

func (ss *session) noteSent(room string, seq uint64) {
	ss.sentMu.Lock()
	ss.sent[room] = seq
	ss.sentMu.Unlock()
}

// Drain implements streamhost.Handler: chat queues nothing more.
func (ss *session) Drain() {}

// Close releases what the stream holds. It runs once, after the last
// Receive.
func (ss *session) Close() {
	for name, m := range ss.rooms {
		ss.svc.leave(m, false)
		delete(ss.rooms, name)
	}
	ss.st.Close(nil)
	ss.svc.lim.Release(ss.user)
}

// Receive decodes one ClientEvent and answers it. Only a fatal problem
// returns an error: undecodable bytes (INVALID_ARGUMENT; grpc-go's codec
// would have said INTERNAL) or a flood.
func (ss *session) Receive(f *wire.Frame) error {
	ev := &chatv1.ClientEvent{}
	if err := wire.Decode(f, ev); err != nil {
		return err
	}
	switch e := ev.GetEvent().(type) {
	case *chatv1.ClientEvent_Join:
		ss.onJoin(e.Join)
	case *chatv1.ClientEvent_Leave:
		ss.onLeave(e.Leave)
	case *chatv1.ClientEvent_Send:
		return ss.onSend(e.Send)
	case *chatv1.ClientEvent_Typing:
		ss.onTyping(e.Typing)
	default:
		why := "empty ClientEvent: set exactly one of join, leave, send, typing"
		if len(ev.ProtoReflect().GetUnknown()) > 0 {
			why = "unknown ClientEvent: no known event field is set (this server speaks bidikit.chat.v1: join, leave, send, typing)"
		}
		ss.reject(codes.InvalidArgument, "event", "", "", why)
	}
	return nil
}

// reject answers with an Error event; the stream stays open.
func (ss *session) reject(code codes.Code, field, room, msgID, why string) {
	if code == codes.InvalidArgument || code == codes.FailedPrecondition {
		ss.svc.mRejected.WithLabelValues(field).Inc()
	}
	ss.pushEvent(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Error{Error: &chatv1.Error{
		Code: uint32(code), Message: why, Field: field, Room: room, ClientMsgId: msgID}}})
}

// rejectErr answers a validation error (a *validate.FieldError).
func (ss *session) rejectErr(field string, err error, room, msgID string) {
	ss.reject(codes.InvalidArgument, field, room, msgID, err.Error())
}

func (ss *session) onJoin(j *chatv1.Join) {
	name := j.GetRoom()
	if err := validName("join.room", name); err != nil {
		ss.rejectErr("join.room", err, name, "")
		return
	}
	if _, ok := ss.rooms[name]; ok {
		ss.reject(codes.FailedPrecondition, "join.room", name, "",
			fmt.Sprintf("room %q is already joined on this stream; Leave it first to join again", name))
		return
	}
	if len(ss.rooms) >= ss.svc.cfg.MaxRoomsPerStream {
		ss.reject(codes.ResourceExhausted, "join.room", name, "",
			fmt.Sprintf("this stream has joined %d rooms, the limit (MaxRoomsPerStream); Leave one first", len(ss.rooms)))
		return
	}
	if ss.svc.acl != nil && !ss.svc.acl.Allowed(name, ss.user) {
		ss.reject(codes.PermissionDenied, "join.room", name, "",
			fmt.Sprintf("user %q may not join room %q", ss.user, name))
		return
	}
	var after *uint64
	if j != nil {
		after = j.ResumeAfter
	}
	if m := ss.svc.join(ss, name, after); m != nil {
		ss.rooms[name] = m
	}
}

func (ss *session) onLeave(l *chatv1.Leave) {
	name := l.GetRoom()
	if err := validName("leave.room", name); err != nil {
		ss.rejectErr("leave.room", err, name, "")
		return
	}
	m := ss.rooms[name]
	if m == nil {
		ss.reject(codes.FailedPrecondition, "leave.room", name, "",
			fmt.Sprintf("room %q is not joined on this stream", name))
		return
	}
	delete(ss.rooms, name)
	ss.svc.leave(m, true)
}

func (ss *session) onTyping(t *chatv1.Typing) {
	name := t.GetRoom()
	if err := validName("typing.room", name); err != nil {
		ss.rejectErr("typing.room", err, name, "")
		return
	}
	m := ss.rooms[name]
	if m == nil {
		ss.reject(codes.FailedPrecondition, "typing.room", name, "",
			fmt.Sprintf("room %q is not joined on this stream; send Join first", name))
		return
	}
	ss.svc.typing(m, t.GetActive())
}

func (ss *session) onSend(snd *chatv1.Send) error {
	name, id := snd.GetRoom(), snd.GetClientMsgId()
	if err := validName("send.room", name); err != nil {
		ss.rejectErr("send.room", err, name, id)
		return nil
	}
	m := ss.rooms[name]
	if m == nil {
		ss.reject(codes.FailedPrecondition, "send.room", name, id,
			fmt.Sprintf("room %q is not joined on this stream; send Join first", name))
		return nil
	}
	if err := validID("send.client_msg_id", id); err != nil {
		ss.rejectErr("send.client_msg_id", err, name, id)
		return nil
	}
	if err := validBody("send.body", snd.GetBody(), ss.svc.cfg.MaxBodyBytes); err != nil {
		ss.rejectErr("send.body", err, name, id)
		return nil
	}
	if sess := snd.GetSenderSession(); sess != "" {
		if err := validate.ID("send.sender_session", sess, maxSenderSessionBytes); err != nil {
			ss.rejectErr("send.sender_session", err, name, id)
			return nil
		}
		if snd.GetSenderSeq() == 0 {
			ss.reject(codes.InvalidArgument, "send.sender_seq", name, id,
				"send.sender_seq: must be 1 or more with a sender_session (the session numbers its messages 1, 2, 3, ...)")
			return nil
		}
	}
	if !ss.lim.Allow() {
		return ss.refuse(name, id)
	}
	ss.svc.send(ss, m, snd)
	return nil
}

// refuse answers a rate-limited Send, and ends the stream when the sender
// keeps going far over its rate: more than FloodFactor x SendBurst refusals
// within one FloodWindow (the service's streamhost.FloodPolicy).
func (ss *session) refuse(room, id string) error {
	cfg := &ss.svc.cfg
	ss.svc.mRateLimited.Inc()
	ss.reject(codes.ResourceExhausted, "send", room, id,
		fmt.Sprintf("rate limit: at most %g messages/s per user with bursts of %d; slow down and resend this client_msg_id", cfg.SendRate, cfg.SendBurst))
	if ss.svc.flood.Refused(&ss.flood, time.Now(), 1) {
		ss.svc.log.Info("flooder cut", "user", ss.user, "refusals", ss.flood.Count())
		return status.Errorf(codes.ResourceExhausted,
			"sending far over the rate limit: %d sends refused within %v (limit %g messages/s, burst %d)",
			ss.flood.Count(), cfg.FloodWindow, cfg.SendRate, cfg.SendBurst)
	}
	return nil
}

// Write is the stream's only sender (streamhost.Handler): it writes a
// batch, turning runs of messages for one room into one MessageBatch. Acks
// queued among such a run are written right after its batch (an Ack and
// the Message it confirms are independent events: a sender gets its own
// message through the room's feed, whose order the acks do not share), so
// the echo of a sender's own messages does not cut every run in pieces.
//
// A stream cut as a slow consumer ends at once with its status: what is
// still queued is not written (the status names where to resume).
func (ss *session) Write(ctx context.Context, batch []item) error {
	delivered, err := ss.sendItems(ctx, batch, &ss.msgs)
	ss.svc.mDelivered.Add(float64(delivered))
	return err
}

// sendItems writes items in order and returns how many events (messages
// counted one by one) it wrote.
func (ss *session) sendItems(ctx context.Context, items []item, msgs *[][]byte) (int, error) {
	delivered := 0
	for i := 0; i < len(items); {
		if ss.st.Cut() {
			return delivered, ss.Overflowed()
		}
		it := &items[i]
		switch {
		case it.job != nil:
			n, err := ss.replay(ctx, it.job, msgs)
			delivered += n
			if err != nil {
				return delivered, err
			}
			i++
		case it.ev != nil:
			if err := ss.stream.Send(it.ev); err != nil {
				return delivered, err
			}
			ss.observe(it.ev)
			delivered++
			i++
		default:
			*msgs = (*msgs)[:0]
			acks := ss.acks[:0]
			j, size, last := i, 0, i
			for ; j < len(items); j++ {
				if isAck(items[j].ev) {
					acks = append(acks, items[j].ev)
					continue
				}
				if items[j].raw == nil || items[j].room != it.room || (j != i && size+len(items[j].raw) > maxEventBytes) {
					break
				}
				size += len(items[j].raw) + 8
				*msgs = append(*msgs, items[j].raw)
				last = j
			}
			if err := ss.stream.Send(rawEvent(encodeMessages(*msgs, false))); err != nil {
				return delivered, err
			}
			ss.noteSent(it.room, items[last].seq)
			delivered += len(*msgs)
			clear(*msgs)
			for _, ack := range acks {
				if err := ss.stream.Send(ack); err != nil {
					return delivered, err
				}
				delivered++
			}
			clear(acks)
			ss.acks = acks[:0]
			i = j
		}
	}
	return delivered, nil
}

// isAck reports whether ev is an Ack.
func isAck(ev *chatv1.ServerEvent) bool {
	_, ok := ev.GetEvent().(*chatv1.ServerEvent_Ack)
	return ok
}

// observe keeps the resume positions of the slow-consumer message current.
func (ss *session) observe(ev *chatv1.ServerEvent) {
	switch e := ev.GetEvent().(type) {
	case *chatv1.ServerEvent_Joined:
		pos := e.Joined.GetHeadSeq()
		if f := e.Joined.GetReplayFrom(); f > 0 {
			pos = f - 1
		}
		ss.noteSent(e.Joined.GetRoom(), pos)
	case *chatv1.ServerEvent_Left:
		ss.sentMu.Lock()
		delete(ss.sent, e.Left.GetRoom())
		ss.sentMu.Unlock()
	}
}

// replay writes job's history from the log in chunks, at the writer's own
// pace (the stream's flow control is the back-pressure). Live messages of the
// room wait behind the job in the queue.
func (ss *session) replay(ctx context.Context, job *replayJob, msgs *[][]byte) (int, error) {
	r := job.m.room
	delivered := 0
	var recs []store.Record
	for next := job.from; next <= job.to; {
		recs = recs[:0]
		err := ss.svc.readLog(ctx, r, next, job.to, &recs)
		if err != nil {
			return delivered, status.Errorf(codes.Unavailable, "replay of room %q from seq %d failed: %v", r.name, next, err)
		}
		if len(recs) == 0 {
			break
		}
		for k := 0; k < len(recs); {
			if ss.st.Cut() {
				return delivered, ss.Overflowed()
			}
			*msgs = (*msgs)[:0]
			k0, size := k, 0
			for k < len(recs) && (k == k0 || size+len(recs[k].Payload) <= maxEventBytes) {
				size += len(recs[k].Payload) + 8
				*msgs = append(*msgs, recs[k].Payload)
				k++
			}
			if err := ss.stream.Send(rawEvent(encodeMessages(*msgs, true))); err != nil {
				return delivered, err
			}
			clear(*msgs)
			ss.noteSent(r.name, recs[k-1].Seq)
			delivered += k - k0
		}
		next = recs[len(recs)-1].Seq + 1
		if err := ctx.Err(); err != nil {
			return delivered, err
		}
	}
	return delivered, nil
}
