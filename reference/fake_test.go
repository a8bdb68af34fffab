package reference_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/auth"
)

// fakeChat is a minimal service.Service speaking the chat protocol: Join is
// answered with Joined, Send with Ack, a Join of room "panic" panics. Drain
// ends every open stream with UNAVAILABLE; holdDrain, when set, is waited on
// first so a test can look at the server mid-shutdown.
type fakeChat struct {
	chatv1.UnimplementedChatServiceServer

	holdDrain chan struct{}

	active    atomic.Int64
	drainOnce sync.Once
	draining  chan struct{}
	idle      chan struct{} // receives after each stream ends
	closed    atomic.Int32
}

func newFakeChat() *fakeChat {
	return &fakeChat{draining: make(chan struct{}), idle: make(chan struct{}, 1)}
}

func (f *fakeChat) Name() string { return chatv1.ChatService_ServiceDesc.ServiceName }

func (f *fakeChat) Register(s *grpc.Server) { chatv1.RegisterChatServiceServer(s, f) }

func (f *fakeChat) Drain(ctx context.Context) error {
	if f.holdDrain != nil {
		select {
		case <-f.holdDrain:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.drainOnce.Do(func() { close(f.draining) })
	for f.active.Load() > 0 {
		select {
		case <-f.idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *fakeChat) Close() error {
	f.closed.Add(1)
	return nil
}

// Connect: the receive loop (its own goroutine) owns Recv errors and hands
// events over; this goroutine owns Send.
func (f *fakeChat) Connect(stream grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]) error {
	select {
	case <-f.draining:
		return status.Error(codes.Unavailable, "server shutting down")
	default:
	}
	f.active.Add(1)
	defer func() {
		f.active.Add(-1)
		select {
		case f.idle <- struct{}{}:
		default:
		}
	}()
	user, _ := auth.UserFrom(stream.Context())
	events := make(chan *chatv1.ClientEvent)
	recvDone := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			select {
			case events <- ev:
			case <-stream.Context().Done():
				recvDone <- stream.Context().Err()
				return
			}
		}
	}()
	for {
		select {
		case <-f.draining:
			return status.Error(codes.Unavailable, "server shutting down")
		case err := <-recvDone:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case ev := <-events:
			var out *chatv1.ServerEvent
			switch e := ev.Event.(type) {
			case *chatv1.ClientEvent_Join:
				if e.Join.GetRoom() == "panic" {
					panic("fakeChat: asked to panic")
				}
				out = &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{Joined: &chatv1.Joined{
					Room: e.Join.GetRoom(), Members: []string{user}}}}
			case *chatv1.ClientEvent_Send:
				out = &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{
					Room: e.Send.GetRoom(), ClientMsgId: e.Send.GetClientMsgId(), Seq: 1}}}
			default:
				continue
			}
			if err := stream.Send(out); err != nil {
				return err
			}
		}
	}
}
