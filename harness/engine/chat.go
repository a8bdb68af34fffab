package engine

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/event"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// maxPending bounds the unacknowledged sends a chat client remembers for
// ack latency and for resending after a reconnect.
const maxPending = 4096

// chatDriver speaks bidikit.chat.v1 for chatter, lurker, typist, resumer and
// the chat side of the attackers. The send loop owns out, senderSeq and the
// rng; mu guards what the receive loop also touches (positions, pending).
type chatDriver struct {
	c      *vclient
	rooms  []string
	body   string
	typing bool // typist: mostly typing indicators

	senderSeq uint64
	out       chatv1.ClientEvent
	send      chatv1.Send
	in        chatv1.ServerEvent

	mu        sync.Mutex
	pos       map[string]uint64 // highest seq seen per room (after a first join)
	hasPos    map[string]bool
	asked     map[string]uint64 // resume_after asked in the current stream
	joined    map[string]bool
	pending   map[string]pendingSend
	staleBack uint64 // positions to go back on the next join (+1: 0 means none)
}

type pendingSend struct {
	room string
	seq  uint64
	at   time.Time
	body string
	sent int64
}

func newChatDriver(c *vclient, bodyBytes int, typing bool) *chatDriver {
	return &chatDriver{c: c, rooms: c.plan.Scopes, body: strings.Repeat("m", max(bodyBytes, 1)), typing: typing,
		pos: map[string]uint64{}, hasPos: map[string]bool{}, asked: map[string]uint64{},
		joined: map[string]bool{}, pending: map[string]pendingSend{}}
}

func (d *chatDriver) method() (*grpc.StreamDesc, string) {
	return &chatv1.ChatService_ServiceDesc.Streams[0], chatv1.ChatService_Connect_FullMethodName
}

func (d *chatDriver) recvMsg() proto.Message { return &d.in }

func (d *chatDriver) wake() <-chan struct{} { return nil }

func (d *chatDriver) onWake(*writer) error { return nil }

func (d *chatDriver) stale(back uint64) {
	d.mu.Lock()
	d.staleBack = back + 1
	d.mu.Unlock()
}

// start joins every room, resuming from the last seen position after the
// first stream, then resends what was never acknowledged, in send order.
func (d *chatDriver) start(w *writer) error {
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
		joins = append(joins, j)
	}
	d.staleBack = 0
	resend := make([]pendingSend, 0, len(d.pending))
	ids := make([]string, 0, len(d.pending))
	for id, p := range d.pending {
		resend = append(resend, p)
		ids = append(ids, id)
	}
	d.mu.Unlock()
	for _, j := range joins {
		if err := w.send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: j}}); err != nil {
			return err
		}
	}
	idx := make([]int, len(resend))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return resend[idx[a]].seq < resend[idx[b]].seq })
	for _, i := range idx {
		p := resend[i]
		m := &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
			Room: p.room, ClientMsgId: ids[i], SenderSeq: p.seq, Body: p.body, ClientSentUnixNanos: p.sent}}}
		if err := w.send(m); err != nil {
			return err
		}
	}
	return nil
}

// act sends n messages (typists mostly send typing indicators).
func (d *chatDriver) act(w *writer, n int) error {
	for range n {
		room := d.rooms[0]
		if len(d.rooms) > 1 {
			room = d.rooms[d.c.rng.IntN(len(d.rooms))]
		}
		if d.typing && d.c.rng.IntN(5) != 0 {
			if err := w.send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Typing{Typing: &chatv1.Typing{Room: room, Active: true}}}); err != nil {
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

func (d *chatDriver) sendBody(w *writer, room, body string) error {
	d.senderSeq++
	id := d.c.plan.User + "." + d.c.r.opts.runID + "." + strconv.FormatUint(d.senderSeq, 10)
	now := time.Now()
	d.mu.Lock()
	if len(d.pending) < maxPending {
		d.pending[id] = pendingSend{room: room, seq: d.senderSeq, at: now, body: body, sent: now.UnixNano()}
	}
	d.mu.Unlock()
	d.c.ev(&event.Event{Kind: event.Send, Scope: room, MsgID: id, SenderSeq: d.senderSeq})
	d.send = chatv1.Send{Room: room, ClientMsgId: id, SenderSeq: d.senderSeq, Body: body, ClientSentUnixNanos: now.UnixNano()}
	d.out.Event = &chatv1.ClientEvent_Send{Send: &d.send}
	return w.send(&d.out)
}

func (d *chatDriver) oversized(w *writer, n int) error {
	return d.sendBody(w, d.rooms[0], strings.Repeat("x", n))
}

func (d *chatDriver) finish(context.Context, *writer, <-chan struct{}) {}

func (d *chatDriver) handle(m proto.Message) {
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
		d.mu.Unlock()
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
		delete(d.pending, a.ClientMsgId)
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
		if er.ClientMsgId != "" {
			d.mu.Lock()
			delete(d.pending, er.ClientMsgId) // refused: never resent
			d.mu.Unlock()
		}
		d.c.ev(&event.Event{Kind: event.Error, Code: codes.Code(er.Code), Detail: er.Message, Field: er.Field,
			Scope: er.Room, MsgID: er.ClientMsgId})
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

func (d *chatDriver) ended() {
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
