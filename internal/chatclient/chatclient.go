// Package chatclient is the one client side of bidikit.chat.v1 that the
// harness engine's chat driver, the bench chat loop and the reference
// specs' scripted client (internal/chattest) share: opening a stream as a
// user (bearer token), the client events (Join, Leave, Typing, Send; a
// reusable Send for hot loops), client message ids, what a ServerEvent
// means (Dispatch: a Batch is its messages one by one; Flatten for a log),
// send-to-delivery latency, and a Session: one user's rooms across streams
// (resume positions, the current stream's joins, unacknowledged sends
// resent in sender order, ack matching and latency).
//
// It owns no goroutine and no stream: the caller reads and writes the
// stream and decides what an event means for it (events for the judge,
// counters, a test log).
package chatclient

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// WithUser returns ctx carrying "authorization: Bearer user", which the
// reference server's development auth reads as the user name.
func WithUser(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+user)
}

// Connect opens a ChatService.Connect stream on cc as user (WithUser);
// ctx's end cancels the stream. The error names the user.
func Connect(ctx context.Context, cc grpc.ClientConnInterface, user string) (chatv1.ChatService_ConnectClient, error) {
	st, err := chatv1.NewChatServiceClient(cc).Connect(WithUser(ctx, user))
	if err != nil {
		return nil, fmt.Errorf("open a chat stream for %s: %w", user, err)
	}
	return st, nil
}
