package cluster_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/bidikit/bidikit/internal/chattest"
	"github.com/bidikit/bidikit/internal/refcluster"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
)

// benchMode is one way to run the reference server for a benchmark.
type benchMode struct {
	name      string
	instances int
	nats      bool // false: the single-instance memory store
}

var benchModes = []benchMode{
	{"memory-1-instance", 1, false},
	{"jetstream-1-instance", 1, true},
	{"jetstream-2-instances", 2, true},
	{"jetstream-3-instances", 3, true},
}

// startBench starts the mode's servers (and a NATS server with file
// storage when needed) and returns their gRPC addresses.
func startBench(b *testing.B, mode benchMode) []string {
	b.Helper()
	url := ""
	if mode.nats {
		url = refcluster.StartNATS(b).ClientURL()
	}
	addrs := make([]string, mode.instances)
	for i := range addrs {
		cfg := refcluster.Config(url)
		cfg.Chat.History = 1 << 20
		cfg.Collab.SubmitRate = 0 // unlimited
		addrs[i] = refcluster.Start(b, cfg, nil).Addr()
	}
	return addrs
}

// benchStream is a joined chat stream whose reader counts messages and acks.
type benchStream struct {
	st     chatv1.ChatService_ConnectClient
	msgs   atomic.Int64
	acks   chan struct{} // one token per ack (sender only)
	target int64
	done   chan struct{} // closed when msgs reaches target
}

func openBench(b *testing.B, cc *grpc.ClientConn, user, room string, target int64, acks chan struct{}) *benchStream {
	b.Helper()
	ctx, cancel := context.WithCancel(chattest.WithUser(context.Background(), user))
	b.Cleanup(cancel)
	st, err := chatv1.NewChatServiceClient(cc).Connect(ctx)
	if err != nil {
		b.Fatal(err)
	}
	s := &benchStream{st: st, acks: acks, target: target, done: make(chan struct{})}
	if err := st.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: room}}}); err != nil {
		b.Fatal(err)
	}
	joined := make(chan struct{})
	go func() {
		var once bool
		for {
			ev, err := st.Recv()
			if err != nil {
				return
			}
			n := int64(0)
			switch {
			case ev.GetJoined() != nil && !once:
				once = true
				close(joined)
			case ev.GetMessage() != nil:
				n = 1
			case ev.GetBatch() != nil:
				n = int64(len(ev.GetBatch().GetMessages()))
			case ev.GetAck() != nil && s.acks != nil:
				s.acks <- struct{}{}
			}
			if n > 0 && s.msgs.Add(n) == s.target {
				close(s.done)
			}
		}
	}()
	select {
	case <-joined:
	case <-time.After(10 * time.Second):
		b.Fatal("no Joined within 10s")
	}
	return s
}

func benchConns(b *testing.B, addrs []string) []*grpc.ClientConn {
	ccs := make([]*grpc.ClientConn, len(addrs))
	for i, a := range addrs {
		ccs[i] = chattest.Dial(b, a)
	}
	return ccs
}

// BenchmarkFanout: one sender (on instance 0) sends b.N messages to a room
// with 30 members spread evenly over the instances, at most 256 unacked;
// the op ends when every member has every message. Reports deliveries/s.
//
//	go test -run '^$' -bench Fanout -benchtime 20000x ./reference/cluster/
func BenchmarkFanout(b *testing.B) {
	const members, window = 30, 256
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			ccs := benchConns(b, startBench(b, mode))
			room := "fanout"
			ms := make([]*benchStream, members)
			for i := range ms {
				ms[i] = openBench(b, ccs[i%len(ccs)], fmt.Sprintf("m%d", i), room, int64(b.N), nil)
			}
			sem := make(chan struct{}, window)
			sender := openBench(b, ccs[0], "sender", room, -1, make(chan struct{}, window))
			go func() {
				for range sender.acks {
					<-sem
				}
			}()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				sem <- struct{}{}
				if err := sender.st.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
					Room: room, ClientMsgId: fmt.Sprint(i), SenderSeq: uint64(i + 1), Body: "0123456789abcdef0123456789abcdef"}}}); err != nil {
					b.Fatal(err)
				}
			}
			for _, m := range ms {
				select {
				case <-m.done:
				case <-time.After(60 * time.Second):
					b.Fatalf("member has %d of %d messages after 60s", m.msgs.Load(), b.N)
				}
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N*members)/el.Seconds(), "deliveries/s")
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
		})
	}
}

// BenchmarkAckRoundTrip: one message in flight at a time, Send to Ack, in a
// room with one member (the sender); ns/op is the per-message latency, so
// the JetStream modes minus the memory mode is the broker's overhead per
// message.
//
//	go test -run '^$' -bench AckRoundTrip -benchtime 5000x ./reference/cluster/
func BenchmarkAckRoundTrip(b *testing.B) {
	for _, mode := range benchModes[:2] {
		b.Run(mode.name, func(b *testing.B) {
			ccs := benchConns(b, startBench(b, mode))
			sender := openBench(b, ccs[0], "sender", "rtt", -1, make(chan struct{}, 1))
			b.ResetTimer()
			for i := range b.N {
				if err := sender.st.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
					Room: "rtt", ClientMsgId: fmt.Sprint(i), SenderSeq: uint64(i + 1), Body: "0123456789abcdef"}}}); err != nil {
					b.Fatal(err)
				}
				<-sender.acks
			}
		})
	}
}

// BenchmarkCollabEditors: six editors, spread evenly over the instances,
// edit one document with one op in flight each (an insert at the start,
// based on the newest version the editor has seen, so instances contend for
// every version); b.N ops in all. Reports committed ops/s.
//
//	go test -run '^$' -bench CollabEditors -benchtime 6000x ./reference/cluster/
func BenchmarkCollabEditors(b *testing.B) {
	const editors = 6
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			ccs := benchConns(b, startBench(b, mode))
			streams := make([]collabv1.CollabService_EditClient, editors)
			for i := range streams {
				ctx, cancel := context.WithCancel(chattest.WithUser(context.Background(), fmt.Sprintf("ed%d", i)))
				b.Cleanup(cancel)
				st, err := collabv1.NewCollabServiceClient(ccs[i%len(ccs)]).Edit(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := st.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: "bench", ClientId: fmt.Sprint("c", i)}}}); err != nil {
					b.Fatal(err)
				}
				if ev, err := st.Recv(); err != nil || ev.GetOpened() == nil {
					b.Fatalf("open: %v %v", ev, err)
				}
				streams[i] = st
			}
			per := max(b.N/editors, 1)
			var g errgroup.Group
			b.ResetTimer()
			for i, st := range streams {
				g.Go(func() error {
					var known uint64 // every op inserts one character: version v is v long
					for seq := uint64(1); seq <= uint64(per); seq++ {
						if err := st.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Submit{Submit: &collabv1.Submit{
							Document: "bench", ClientId: fmt.Sprint("c", i), ClientSeq: seq, BaseVersion: known,
							Op: insertAt(0, uint32(known), "x")}}}); err != nil {
							return err
						}
						for acked := false; !acked; {
							ev, err := st.Recv()
							if err != nil {
								return err
							}
							switch {
							case ev.GetError() != nil:
								return fmt.Errorf("editor %d: %v", i, ev.GetError())
							case ev.GetAck() != nil:
								known, acked = max(known, ev.GetAck().GetVersion()), true
							case ev.GetOp() != nil:
								known = max(known, ev.GetOp().GetVersion())
							}
						}
					}
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per*editors)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
