// Package chattest is a chat test client for the specs and benchmarks of
// bidikit: one bidikit.chat.v1 stream per Client, a goroutine reading it
// into a log, and the order checks (gapless, same order, sender FIFO) the
// reference server's specs assert on that log. What the protocol means
// (opening a stream as a user, the client events, a Batch read as its
// messages) is internal/chatclient's, shared with the engine and the bench. It has no Ginkgo in it: every
// helper takes a TB (*testing.T, *testing.B or Ginkgo's GinkgoT()), fails
// through TB.Fatalf and registers its clean-up with TB.Cleanup.
package chattest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bidikit/bidikit/internal/chatclient"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// TB is what the helpers need of a test, a benchmark or a Ginkgo spec:
// *testing.T, *testing.B and GinkgoT() all satisfy it. Fatalf must not
// return (testing's runtime.Goexit, Ginkgo's panic).
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// WaitTimeout is a new Client's Timeout: the Eventually timeout the
// reference suites set.
const WaitTimeout = 20 * time.Second

// Dial opens an insecure client connection to addr (a loopback address of
// any bidikit service) with opts added; t's clean-up closes it.
func Dial(t TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// WithUser returns ctx carrying user's bearer token, which the reference
// server's development auth reads as the user name.
func WithUser(ctx context.Context, user string) context.Context {
	return chatclient.WithUser(ctx, user)
}

// Client is a chat stream of one user whose events a reader goroutine
// appends to a log (a Batch flattened into its Message events). The reader
// owns the log and the stream's end under mu; any goroutine may read them
// through the accessors. Sends belong to one goroutine at a time, as on any
// gRPC stream. t's clean-up cancels the stream and waits for the reader.
type Client struct {
	// User is the authenticated user name the stream was opened with.
	User string
	// Stream is the raw stream, for sends whose error the caller judges.
	Stream chatv1.ChatService_ConnectClient
	// Timeout bounds each wait of Join, JoinFrom and CloseAndWait
	// (WaitTimeout unless changed before they run).
	Timeout time.Duration

	t       TB
	cancel  context.CancelFunc
	reading sync.Once
	done    chan struct{}

	mu      sync.Mutex
	evs     []*chatv1.ServerEvent
	changed chan struct{} // closed and replaced on every new event
	err     error         // the stream's end: nil for a clean EOF; set before done closes
}

// Connect opens a stream for user on cc and starts reading it.
func Connect(t TB, cc *grpc.ClientConn, user string) *Client {
	t.Helper()
	c := Open(t, cc, user)
	c.StartReading()
	return c
}

// Open opens a stream for user on cc without reading it (a reader that
// never reads) until StartReading. At clean-up it is read to its end.
func Open(t TB, cc *grpc.ClientConn, user string) *Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := chatclient.Connect(ctx, cc, user)
	if err != nil {
		cancel()
		t.Fatalf("%v", err)
	}
	c := &Client{User: user, Stream: st, Timeout: WaitTimeout, t: t, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	t.Cleanup(func() {
		cancel()
		c.StartReading() // a reader that never read: drain until the cancel ends it
		<-c.done
	})
	return c
}

// StartReading starts the reader goroutine; later calls do nothing.
func (c *Client) StartReading() { c.reading.Do(func() { go c.readAll() }) }

func (c *Client) readAll() {
	for {
		ev, err := c.Stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			close(c.done)
			return
		}
		c.mu.Lock()
		c.evs = append(c.evs, chatclient.Flatten(ev)...)
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

// Cancel cancels the stream's context (an abrupt end: the reader ends with
// CANCELED).
func (c *Client) Cancel() { c.cancel() }

// Done is closed once the reader has seen the stream's end.
func (c *Client) Done() <-chan struct{} { return c.done }

// Ended reports whether Done is closed.
func (c *Client) Ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Err is the stream's end once Done is closed: nil for a clean io.EOF,
// else the status error.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Send sends ev and fails t when the stream refuses it.
func (c *Client) Send(ev *chatv1.ClientEvent) {
	c.t.Helper()
	if err := c.Stream.Send(ev); err != nil {
		c.t.Fatalf("%s: send %v: %v", c.User, ev, err)
	}
}

// Say sends one message to room with body "<user> says <id>"; an error
// means the stream is gone (the caller judges it).
func (c *Client) Say(room, id string, senderSeq uint64) error {
	return c.Stream.Send(SendEv(room, id, senderSeq, fmt.Sprintf("%s says %s", c.User, id)))
}

// Join sends Join for room and waits (Timeout) for its Joined.
func (c *Client) Join(room string) *chatv1.Joined {
	c.t.Helper()
	return c.JoinFrom(room, nil)
}

// JoinFrom sends Join for room, resuming after *after when after is not
// nil, and waits (Timeout) for the room's next Joined, which it returns.
func (c *Client) JoinFrom(room string, after *uint64) *chatv1.Joined {
	c.t.Helper()
	n := len(c.JoinedIn(room))
	c.Send(chatclient.Join(room, after))
	if !c.wait(func() bool { return len(c.joinedLocked(room)) > n }) {
		c.t.Fatalf("%s: no Joined for %s within %v (stream ended: %v, error: %v)", c.User, room, c.Timeout, c.Ended(), c.Err())
	}
	return c.JoinedIn(room)[n]
}

// CloseAndWait half-closes the stream, waits (Timeout) for the reader
// to see its end and returns it: nil for io.EOF, the interop way.
func (c *Client) CloseAndWait() error {
	c.t.Helper()
	if err := c.Stream.CloseSend(); err != nil {
		c.t.Fatalf("%s: CloseSend: %v", c.User, err)
	}
	select {
	case <-c.done:
	case <-time.After(c.Timeout):
		c.t.Fatalf("%s: stream did not end within %v of CloseSend", c.User, c.Timeout)
	}
	return c.Err()
}

// wait blocks until cond (run under mu) holds, the stream ends with cond
// still false, or Timeout passes; it reports whether cond held.
func (c *Client) wait(cond func() bool) bool {
	deadline := time.NewTimer(c.Timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, changed := cond(), c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-c.done:
			c.mu.Lock()
			defer c.mu.Unlock()
			return cond()
		case <-deadline.C:
			return false
		}
	}
}

// Events returns a copy of the log.
func (c *Client) Events() []*chatv1.ServerEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*chatv1.ServerEvent(nil), c.evs...)
}

// Messages returns the messages of room in arrival order.
func (c *Client) Messages(room string) []*chatv1.Message {
	return collect(c.Events(), func(ev *chatv1.ServerEvent) *chatv1.Message {
		if m := ev.GetMessage(); m.GetRoom() == room {
			return m
		}
		return nil
	})
}

// Acks returns every Ack in arrival order.
func (c *Client) Acks() []*chatv1.Ack { return collect(c.Events(), (*chatv1.ServerEvent).GetAck) }

// Errors returns every Error event in arrival order.
func (c *Client) Errors() []*chatv1.Error { return collect(c.Events(), (*chatv1.ServerEvent).GetError) }

// Joined returns every Joined event (of any room) in arrival order.
func (c *Client) Joined() []*chatv1.Joined {
	return collect(c.Events(), (*chatv1.ServerEvent).GetJoined)
}

// JoinedIn returns the Joined events of room in arrival order.
func (c *Client) JoinedIn(room string) []*chatv1.Joined {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.joinedLocked(room)
}

func (c *Client) joinedLocked(room string) []*chatv1.Joined {
	return collect(c.evs, func(ev *chatv1.ServerEvent) *chatv1.Joined {
		if j := ev.GetJoined(); j.GetRoom() == room {
			return j
		}
		return nil
	})
}

// Presences returns every Presence event in arrival order.
func (c *Client) Presences() []*chatv1.Presence {
	return collect(c.Events(), (*chatv1.ServerEvent).GetPresence)
}

// Typings returns every TypingNotice in arrival order.
func (c *Client) Typings() []*chatv1.TypingNotice {
	return collect(c.Events(), (*chatv1.ServerEvent).GetTyping)
}

// collect returns get(ev) for every event of evs where it is not nil.
func collect[T comparable](evs []*chatv1.ServerEvent, get func(*chatv1.ServerEvent) T) []T {
	var out []T
	var zero T
	for _, ev := range evs {
		if v := get(ev); v != zero {
			out = append(out, v)
		}
	}
	return out
}

// JoinEv is a Join of room from the live head.
func JoinEv(room string) *chatv1.ClientEvent { return chatclient.Join(room, nil) }

// LeaveEv is a Leave of room.
func LeaveEv(room string) *chatv1.ClientEvent { return chatclient.Leave(room) }

// TypingEv is a Typing notice for room.
func TypingEv(room string, active bool) *chatv1.ClientEvent { return chatclient.Typing(room, active) }

// SendEv is a Send of body to room with client message id and sender seq.
func SendEv(room, id string, senderSeq uint64, body string) *chatv1.ClientEvent {
	return chatclient.Send(room, id, senderSeq, body)
}
