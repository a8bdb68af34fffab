package engine

import (
	"math/rand/v2"
	"testing"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/chatclient"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// countStream is a Stream that counts what it is given and sends nothing.
type countStream struct{ n int }

func (s *countStream) Send(any) error { s.n++; return nil }

// BenchmarkChatDriverMessage is one message's way through the chat driver
// without a network: Act (numbered, queued in the Session, sent), its Ack,
// and its delivery back, with the events they emit; run with -benchmem to
// see the allocations per message (4 with chatclient, 5 before it).
func BenchmarkChatDriverMessage(b *testing.B) {
	events := make(chan []event.Event, 64)
	done := make(chan struct{})
	go func() {
		for range events {
		}
		close(done)
	}()
	r := &run{}
	r.opts.runID = "run1"
	c := &vclient{r: r, plan: &scenario.ClientPlan{User: "u", Scopes: []string{"room"}},
		rng: rand.New(rand.NewPCG(1, 1)), em: emitter{out: events}}
	d := newChatDriver(c, 64, false)
	w := &countStream{}
	if err := d.Start(w); err != nil {
		b.Fatal(err)
	}
	d.Handle(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{Joined: &chatv1.Joined{Room: "room"}}})
	_ = d.OnWake(w)
	ack := &chatv1.Ack{Room: "room"}
	ackEv := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: ack}}
	msg := &chatv1.Message{Room: "room", Sender: "u", ClientSentUnixNanos: 1}
	msgEv := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: msg}}
	ids := make([]string, b.N) // made before the timer: the driver's allocations only
	for i := range ids {
		ids[i] = chatclient.MsgID("u.run1", uint64(i+1))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := d.Act(w, 1); err != nil {
			b.Fatal(err)
		}
		seq := uint64(i + 1)
		ack.ClientMsgId, ack.Seq = ids[i], seq
		d.Handle(ackEv)
		msg.Seq, msg.SenderSeq, msg.ClientMsgId = seq, seq, ack.ClientMsgId
		d.Handle(msgEv)
	}
	b.StopTimer()
	if w.n < b.N {
		b.Fatalf("sent %d of %d", w.n, b.N)
	}
	close(events)
	<-done
}
