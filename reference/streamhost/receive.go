package streamhost

import (
	"errors"
	"io"
	"runtime/debug"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/reference/wire"
)

// receive is the stream's receive loop, on its own goroutine: Recv, then
// the Handler's Receive, one message at a time. A client half-close waits
// for the stream's commits in flight and closes the queue (the writer ends
// with OK once it is written); a fatal error closes it with that status.
// The loop also ends when a drain began (no further message is handled) or
// the stream ended. Then the Handler's Close releases what it holds.
func (st *Stream[T]) receive(hd Handler[T]) {
	defer st.host.loops.Done()
	defer hd.Close()
	var f wire.Frame
	for {
		if err := st.ss.RecvMsg(&f); err != nil {
			if errors.Is(err, io.EOF) {
				st.finishInflight()
				st.closeQueue(nil)
				return
			}
			st.closeQueue(recvError(err))
			return
		}
		st.busy <- struct{}{}
		if st.draining.Load() {
			<-st.busy
			return
		}
		err := st.handle(hd, &f)
		<-st.busy
		if err != nil {
			st.closeQueue(err)
			return
		}
	}
}

// handle runs hd.Receive; a panic (a server bug, never client input) ends
// this stream with INTERNAL instead of the process.
func (st *Stream[T]) handle(hd Handler[T], f *wire.Frame) (err error) {
	defer func() {
		if p := recover(); p != nil {
			st.host.log.Error("panic handling a client message", "user", st.user,
				"panic", p, "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error while handling the message")
		}
	}()
	return hd.Receive(f)
}

// recvError maps a Recv failure to the stream's final status: undecodable
// bytes are the client's fault (INVALID_ARGUMENT), never INTERNAL.
func recvError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return status.FromContextError(err).Err()
	}
	if st.Code() == codes.Internal && strings.Contains(strings.ToLower(st.Message()), "unmarshal") {
		return status.Errorf(codes.InvalidArgument, "malformed message: %s", st.Message())
	}
	return err
}
