package chat

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bidikit/bidikit/internal/chattest"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// BenchmarkFanout measures broadcast deliveries per second: 1,000 member
// streams over 10 rooms (100 per room) on 10 loopback connections; one member
// per room sends b.N messages of 64 bytes (at most 512 unacked), and the
// clock stops when every member has received every message.
//
//	go test ./reference/chat -run '^$' -bench Fanout -benchtime 20000x
func BenchmarkFanout(b *testing.B) {
	const rooms, members, conns, window = 10, 1000, 10, 512
	cfg := DefaultConfig()
	cfg.SendRate = 0
	cfg.QueueMessages = 8192
	cfg.QueueBytes = 16 << 20
	// Retain everything: store.Memory copies its whole window on every
	// append once over retention, which would dominate the figure.
	cfg.History = 1 << 22
	ts := newTestServer(cfg, nil, nil)
	defer ts.stop()
	ccs := make([]*grpc.ClientConn, conns)
	for i := range ccs {
		cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		ccs[i] = cc
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var received atomic.Int64
	want := int64(b.N) * members
	allDone := make(chan struct{})
	var doneOnce sync.Once
	streams := make([]chatv1.ChatService_ConnectClient, members)
	credits := make([]chan struct{}, rooms)
	joined := make(chan struct{}, members)
	var readers sync.WaitGroup
	for i := 0; i < members; i++ {
		st, err := chatv1.NewChatServiceClient(ccs[i%conns]).Connect(chattest.WithUser(ctx, fmt.Sprintf("m%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		streams[i] = st
		var credit chan struct{}
		if i < rooms {
			credit = make(chan struct{}, window)
			credits[i] = credit
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				ev, err := st.Recv()
				if err != nil {
					return
				}
				n := int64(0)
				switch e := ev.GetEvent().(type) {
				case *chatv1.ServerEvent_Joined:
					joined <- struct{}{}
				case *chatv1.ServerEvent_Message:
					n = 1
				case *chatv1.ServerEvent_Batch:
					n = int64(len(e.Batch.GetMessages()))
				case *chatv1.ServerEvent_Ack:
					if credit != nil {
						<-credit
					}
				}
				if n > 0 && received.Add(n) == want {
					doneOnce.Do(func() { close(allDone) })
				}
			}
		}()
		if err := st.Send(chattest.JoinEv(fmt.Sprintf("room%d", i%rooms))); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < members; i++ {
		<-joined
	}
	body := string(make([]byte, 64))
	b.ResetTimer()
	start := time.Now()
	var senders sync.WaitGroup
	for r := 0; r < rooms; r++ {
		senders.Add(1)
		go func() {
			defer senders.Done()
			st := streams[r]
			for k := 1; k <= b.N; k++ {
				credits[r] <- struct{}{}
				if err := st.Send(chattest.SendEv(fmt.Sprintf("room%d", r), fmt.Sprint(k), uint64(k), body)); err != nil {
					return
				}
			}
		}()
	}
	senders.Wait()
	select {
	case <-allDone:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d deliveries after 5 minutes", received.Load(), want)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(want)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(0, "ns/op")
	cancel()
	readers.Wait()
}
