package chat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/internal/chattest"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// fuzzFrames encodes events as the fuzz input format: each frame is one
// length byte followed by that many bytes, sent as one gRPC message.
func fuzzFrames(evs ...*chatv1.ClientEvent) []byte {
	var out []byte
	for _, ev := range evs {
		b := mustMarshal(ev)
		if len(b) > 255 {
			b = b[:255]
		}
		out = append(out, byte(len(b)))
		out = append(out, b...)
	}
	return out
}

// FuzzClientEvents feeds arbitrary bytes, cut into frames, into a live chat
// stream. The server must not panic (a panic fails the process), must answer
// every recoverable problem with one of the documented Error codes (3, 7, 8,
// 9), and may only end the stream cleanly or with INVALID_ARGUMENT or
// RESOURCE_EXHAUSTED.
//
//	go test ./reference/chat -run '^$' -fuzz FuzzClientEvents -fuzztime 30s
func FuzzClientEvents(f *testing.F) {
	f.Add(fuzzFrames(chattest.JoinEv("lobby"), chattest.SendEv("lobby", "1", 1, "hello"), chattest.TypingEv("lobby", true), chattest.LeaveEv("lobby")))
	f.Add(fuzzFrames(chattest.SendEv("nowhere", "1", 1, "hi"), chattest.JoinEv("a b"), &chatv1.ClientEvent{}))
	f.Add(fuzzFrames(chattest.JoinEv("r"), chattest.SendEv("r", "x", 1, "a"), chattest.SendEv("r", "x", 1, "a"), chattest.JoinEv("r")))
	f.Add(fuzzFrames(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: "r", ResumeAfter: chattest.Ptr(uint64(0))}}}))
	f.Add([]byte{4, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{9, 0x1a, 0x07, 0x0a, 0x01, 'r', 0x22, 0x02, 0xc3, 0x28})
	f.Add([]byte{3, 0x4a, 0x01, 'x'})

	cfg := DefaultConfig()
	cfg.MaxRoomsPerStream = 4
	cfg.SendBurst, cfg.FloodFactor = 20, 1
	cfg.TypingInterval = time.Millisecond
	ts := newTestServer(cfg, nil, denyACL{})
	f.Cleanup(ts.stop)
	cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = cc.Close() })
	run := 0

	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		run++
		rs, err := openRaw(ctx, cc, fmt.Sprintf("fuzzer%d", run%4))
		if err != nil {
			t.Fatal(err)
		}
		defer rs.cancel()
		for frames := 0; len(data) > 0 && frames < 64; frames++ {
			n := min(int(data[0]), len(data)-1)
			if rs.send(data[1:1+n]) != nil {
				break // the server ended the stream; recv below says why
			}
			data = data[1+n:]
		}
		_ = rs.cs.CloseSend()
		for {
			ev, err := rs.recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					return
				}
				switch status.Code(err) {
				case codes.InvalidArgument, codes.ResourceExhausted:
					return
				}
				t.Fatalf("stream ended with an undocumented status: %v", err)
			}
			if e := ev.GetError(); e != nil {
				switch codes.Code(e.GetCode()) {
				case codes.InvalidArgument, codes.PermissionDenied, codes.ResourceExhausted, codes.FailedPrecondition:
				default:
					t.Fatalf("Error event with undocumented code: %v", e)
				}
				if e.GetMessage() == "" || e.GetField() == "" {
					t.Fatalf("Error event without message or field: %v", e)
				}
			}
		}
	})
}
