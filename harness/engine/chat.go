package engine

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// maxPending bounds the unacknowledged sends a chat client remembers for
// ack latency and for resending after a reconnect.
const maxPending = 4096

// Resend back-off after an UNAVAILABLE answer (a Join or a Send the server
// could not serve now, e.g. while a clustered server's stream leader is
// elected): per room, doubling from minRetry up to maxRetry, reset by the
// room's next Joined or Ack.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 2 * time.Second
)

// chatDriver speaks bidikit.chat.v1 for chatter, lurker, typist, resumer and
// the chat side of the attackers. The send loop owns out, senderSeq and the
// rng; mu guards what the receive loop also touches (positions, rooms,
// pending).
//
// Order of a sender's messages (see chat.proto's Error): a room's Sends go
// out only once the room is joined on the current stream (its Joined came);
// until then, and while a resend waits for its back-off, new messages wait
// behind the unacknowledged ones. A new stream, or an UNAVAILABLE answer to
// a Send, sends the room's unacknowledged messages again from the oldest, in
// sender order, before any new one; the server acks those it had stored as
// duplicates. The oldest goes first, alone (a probe): the others follow its
// ack, so a server still electing a stream leader refuses one message per
// attempt rather than every one waiting.
type chatDriver struct {
	c      *vclient
	rooms  []string
	body   string
	typing bool // typist: mostly typing indicators
	wakeC  chan struct{}

	senderSeq uint64
	out       chatv1.ClientEvent
	send      chatv1.Send
	in        chatv1.ServerEvent

	mu        sync.Mutex
	pos       map[string]uint64 // highest seq seen per room (after a first join)
	hasPos    map[string]bool
	asked     map[string]uint64 // resume_after asked in the current stream
	joined    map[string]bool
	pending   map[string]*pendingSend
	state     map[string]*chatRoom
	staleBack uint64 // positions to go back on the next join (+1: 0 means none)
}

type pendingSend struct {
	id   string
	room string
	seq  uint64
	at   time.Time
	body string
	sent int64
}

// roomPhase is where a room stands on the current stream.
type roomPhase int

const (
	roomJoining roomPhase = iota // Join sent, no answer yet
	roomReady                    // joined: Sends go out
	roomRejoin                   // the Join was refused for now: send it again at due
	roomResend                   // resend from the oldest at due
	roomProbe                    // the oldest went out again alone: the others wait for its answer
)

// chatRoom is one room's sending state: queue (unacknowledged messages, in
// sender order) outlives streams; phase, sent, join and due are per stream.
type chatRoom struct {
	queue   []*pendingSend
	sent    int // queue[:sent] went out on the current stream since the last resend
	phase   roomPhase
	join    *chatv1.Join // the current stream's Join, sent again on roomRejoin
	due     time.Time
	backoff time.Duration
}

func newChatDriver(c *vclient, bodyBytes int, typing bool) *chatDriver {
	return &chatDriver{c: c, rooms: c.plan.Scopes, body: strings.Repeat("m", max(bodyBytes, 1)), typing: typing,
		wakeC: make(chan struct{}, 1),
		pos:   map[string]uint64{}, hasPos: map[string]bool{}, asked: map[string]uint64{},
		joined: map[string]bool{}, pending: map[string]*pendingSend{}, state: map[string]*chatRoom{}}
}

func init() {
	RegisterService(Service{Name: scenario.Chat,
		Desc: &chatv1.ChatService_ServiceDesc.Streams[0], Method: chatv1.ChatService_Connect_FullMethodName,
		Attacker: func(c Client, bodyBytes int, _ bool) (Driver, error) {
			return newChatDriver(c.(*vclient), bodyBytes, false), nil
		}})
}

func (d *chatDriver) Message() proto.Message { return &d.in }

func (d *chatDriver) Wake() <-chan struct{} { return d.wakeC }

// poke asks the send loop to look at the rooms (onWake); it never blocks.
func (d *chatDriver) poke() {
	select {
	case d.wakeC <- struct{}{}:
	default:
	}
}

func (d *chatDriver) Stale(back uint64) {
	d.mu.Lock()
	d.staleBack = back + 1
	d.mu.Unlock()
}

// room returns name's sending state. Caller holds d.mu.
func (d *chatDriver) room(name string) *chatRoom {
	rs := d.state[name]
	if rs == nil {
		rs = &chatRoom{}
		d.state[name] = rs
	}
	return rs
}

// retryLater puts rs into phase (roomRejoin or roomResend) and schedules a
// wake-up after its back-off. Caller holds d.mu.
func (d *chatDriver) retryLater(rs *chatRoom, phase roomPhase) {
	rs.backoff = min(max(rs.backoff*2, minRetry), maxRetry)
	rs.phase, rs.due, rs.sent = phase, time.Now().Add(rs.backoff), 0
	time.AfterFunc(rs.backoff, d.poke)
}

// start joins every room, resuming from the last seen position after the
// first stream. The rooms' unacknowledged messages go out again once each
// room's Joined has come (onWake).
func (d *chatDriver) Start(w Stream) error {
	d.mu.Lock()
	joins := make([]*chatv1.Join, 0, len(d.rooms))
	clear(d.asked)
	for _, room := range d.rooms {
		j := &chatv1.Join{Room: room}
		if d.hasPos[room] {
			after := d.pos[room]
			if d.staleBack > 0 {
				if back := d.staleBack - 1; back == 0 || back >= after {
					after = 0
				} else {
					after -= back
				}
			}
			j.ResumeAfter = &after
			d.asked[room] = after
		}
		rs := d.room(room)
		rs.phase, rs.sent, rs.join = roomJoining, 0, j
		joins = append(joins, j)
	}
	d.staleBack = 0
	d.mu.Unlock()
	for _, j := range joins {
		if err := w.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: j}}); err != nil {
			return err
		}
	}
	return nil
}

// onWake sends again the Joins whose back-off is over, and the messages of
// the joined rooms that have not gone out on this stream, oldest first.
func (d *chatDriver) OnWake(w Stream) error {
	now := time.Now()
	var joins []*chatv1.Join
	var out []*pendingSend
	d.mu.Lock()
	for _, room := range d.rooms {
		rs := d.room(room)
		switch {
		case rs.phase == roomRejoin && !now.Before(rs.due):
			rs.phase = roomJoining
			joins = append(joins, rs.join)
		case rs.phase == roomResend && !now.Before(rs.due):
			rs.phase, rs.sent = roomReady, 0
			if len(rs.queue) > 0 {
				rs.phase, rs.sent = roomProbe, 1
				out = append(out, rs.queue[0])
			}
		}
		if rs.phase == roomReady && rs.sent < len(rs.queue) {
			out = append(out, rs.queue[rs.sent:]...) // a copy: forget edits the queue
			rs.sent = len(rs.queue)
		}
	}
	d.mu.Unlock()
	for _, j := range joins {
		if err := w.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: j}}); err != nil {
			return err
		}
	}
	return d.transmit(w, out)
}

// transmit sends ps, in order.
func (d *chatDriver) transmit(w Stream, ps []*pendingSend) error {
	for _, p := range ps {
		d.send = chatv1.Send{Room: p.room, ClientMsgId: p.id, SenderSeq: p.seq, Body: p.body, ClientSentUnixNanos: p.sent,
			SenderSession: d.c.r.opts.runID}
		d.out.Event = &chatv1.ClientEvent_Send{Send: &d.send}
		if err := w.Send(&d.out); err != nil {
			return err
		}
	}
	return nil
}

// act sends n messages (typists mostly send typing indicators, to joined
// rooms only).
func (d *chatDriver) Act(w Stream, n int) error {
	for range n {
		room := d.rooms[0]
		if len(d.rooms) > 1 {
			room = d.rooms[d.c.rng.IntN(len(d.rooms))]
		}
		if d.typing && d.c.rng.IntN(5) != 0 {
			d.mu.Lock()
			ready := d.room(room).phase == roomReady
			d.mu.Unlock()
			if !ready {
				continue
			}
			if err := w.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Typing{Typing: &chatv1.Typing{Room: room, Active: true}}}); err != nil {
				return err
			}
			continue
		}
		if err := d.sendBody(w, room, d.body); err != nil {
			return err
		}
	}
	return nil
}

// sendBody numbers a new message and sends it, after the room's older
// unacknowledged ones, once the room is ready; until then it waits in the
// room's queue. Past maxPending unacknowledged messages it goes out at once,
// untracked (no resend, no ack latency).
func (d *chatDriver) sendBody(w Stream, room, body string) error {
	d.senderSeq++
	id := d.c.plan.User + "." + d.c.r.opts.runID + "." + strconv.FormatUint(d.senderSeq, 10)
	now := time.Now()
	p := &pendingSend{id: id, room: room, seq: d.senderSeq, at: now, body: body, sent: now.UnixNano()}
	out := []*pendingSend{p}
	d.mu.Lock()
	if len(d.pending) < maxPending {
		d.pending[id] = p
		rs := d.room(room)
		rs.queue = append(rs.queue, p)
		out = nil
		if rs.phase == roomReady {
			out = append(out, rs.queue[rs.sent:]...) // a copy: forget edits the queue
			rs.sent = len(rs.queue)
		}
	}
	d.mu.Unlock()
	d.c.ev(&event.Event{Kind: event.Send, Scope: room, MsgID: id, SenderSeq: d.senderSeq})
	return d.transmit(w, out)
}

func (d *chatDriver) Oversized(w Stream, n int) error {
	return d.sendBody(w, d.rooms[0], strings.Repeat("x", n))
}

func (d *chatDriver) Handle(m proto.Message) {
	in := m.(*chatv1.ServerEvent)
	switch ev := in.Event.(type) {
	case *chatv1.ServerEvent_Joined:
		j := ev.Joined
		d.mu.Lock()
		after, asked := d.asked[j.Room]
		d.joined[j.Room] = true
		if !asked && (!d.hasPos[j.Room] || d.pos[j.Room] < j.HeadSeq) {
			d.pos[j.Room] = j.HeadSeq
		}
		if asked {
			d.pos[j.Room] = after
		}
		d.hasPos[j.Room] = true
		if rs := d.state[j.Room]; rs != nil {
			// Unacknowledged messages go out again, the oldest first
			// (onWake).
			rs.phase, rs.due, rs.backoff = roomResend, time.Now(), 0
		}
		d.mu.Unlock()
		d.poke()
		d.c.ev(&event.Event{Kind: event.Join, Scope: j.Room, Seq: j.HeadSeq, ResumeAfter: after, HasResume: asked,
			ReplayFrom: j.ReplayFrom, Complete: j.ResumeComplete})
	case *chatv1.ServerEvent_Message:
		d.deliver(ev.Message, time.Now())
	case *chatv1.ServerEvent_Batch:
		now := time.Now()
		for _, msg := range ev.Batch.Messages {
			d.deliver(msg, now)
		}
	case *chatv1.ServerEvent_Ack:
		a := ev.Ack
		d.mu.Lock()
		p, ok := d.pending[a.ClientMsgId]
		if ok {
			d.forget(p)
			d.room(p.room).backoff = 0
		}
		d.mu.Unlock()
		e := event.Event{Kind: event.Ack, Scope: a.Room, MsgID: a.ClientMsgId, Seq: a.Seq, Duplicate: a.Duplicate}
		if ok {
			e.SenderSeq = p.seq
			e.Latency = time.Since(p.at)
		} else if i := strings.LastIndexByte(a.ClientMsgId, '.'); i >= 0 {
			e.SenderSeq, _ = strconv.ParseUint(a.ClientMsgId[i+1:], 10, 64)
		}
		d.c.ev(&e)
	case *chatv1.ServerEvent_Error:
		er := ev.Error
		d.mu.Lock()
		switch {
		case er.ClientMsgId != "" && codes.Code(er.Code) == codes.Unavailable:
			// Not stored now: resend from the oldest unacknowledged
			// message of the room, in order, after a back-off.
			if p := d.pending[er.ClientMsgId]; p != nil {
				if rs := d.room(p.room); rs.phase == roomReady || rs.phase == roomProbe {
					d.retryLater(rs, roomResend)
				}
			}
		case er.ClientMsgId != "":
			if p := d.pending[er.ClientMsgId]; p != nil {
				d.forget(p) // refused for good: never resent
			}
		case strings.HasPrefix(er.Field, "join") && er.Room != "":
			if rs := d.state[er.Room]; rs != nil && rs.phase == roomJoining {
				if codes.Code(er.Code) == codes.Unavailable {
					d.retryLater(rs, roomRejoin)
				} else {
					// Refused for good: its Sends go out and are refused
					// in turn, each with its own Error event.
					rs.phase = roomReady
					d.poke()
				}
			}
		}
		d.mu.Unlock()
		d.c.ev(&event.Event{Kind: event.Error, Code: codes.Code(er.Code), Detail: er.Message, Field: er.Field,
			Scope: er.Room, MsgID: er.ClientMsgId})
	}
}

// forget drops p (answered: acked or refused for good) from the pending
// messages and its room's queue; a probe's answer lets the others go.
// Caller holds d.mu.
func (d *chatDriver) forget(p *pendingSend) {
	delete(d.pending, p.id)
	rs := d.room(p.room)
	for i, q := range rs.queue {
		if q == p {
			rs.queue = slices.Delete(rs.queue, i, i+1)
			if i < rs.sent {
				rs.sent--
			}
			break
		}
	}
	if rs.phase == roomProbe && rs.sent == 0 {
		rs.phase = roomReady
		d.poke()
	}
}

func (d *chatDriver) deliver(m *chatv1.Message, now time.Time) {
	d.mu.Lock()
	if m.Seq > d.pos[m.Room] {
		d.pos[m.Room] = m.Seq
	}
	d.mu.Unlock()
	e := event.Event{Kind: event.Deliver, Scope: m.Room, Seq: m.Seq, Sender: m.Sender, MsgID: m.ClientMsgId,
		SenderSeq: m.SenderSeq, Replay: m.Replay}
	if !m.Replay && m.ClientSentUnixNanos > 0 {
		e.Latency = time.Duration(now.UnixNano() - m.ClientSentUnixNanos)
	}
	d.c.ev(&e)
}

func (d *chatDriver) Ended() {
	d.mu.Lock()
	rooms := make([]string, 0, len(d.joined))
	for r := range d.joined {
		rooms = append(rooms, r)
	}
	clear(d.joined)
	d.mu.Unlock()
	sort.Strings(rooms)
	for _, r := range rooms {
		d.c.ev(&event.Event{Kind: event.Leave, Scope: r})
	}
}
