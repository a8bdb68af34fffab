package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/reference/cluster"
)

// startNATS starts one in-process nats-server with JetStream on a free
// loopback port, storing in a temporary directory, stopped at cleanup.
func startNATS() *cluster.Embedded {
	GinkgoHelper()
	e, err := cluster.StartEmbedded(GinkgoT().TempDir(), "127.0.0.1:0", nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(e.Shutdown)
	return e
}

// instance is one reference server (reference.Build) in clustered mode.
type instance struct {
	srv    *reference.Server
	cancel context.CancelFunc
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startInstance builds and starts a reference server using the NATS server
// at url for chat, on 127.0.0.1:0 with no admin server; stopped at cleanup.
func startInstance(url string) *instance {
	GinkgoHelper()
	cfg := reference.DefaultConfig()
	cfg.Options.Addr = "127.0.0.1:0"
	cfg.Options.AdminAddr = ""
	cfg.Options.GracePeriod = 2 * time.Second
	cfg.NATS = url
	cfg.Chat.SendRate = 0 // unlimited
	srv, err := reference.Build(cfg, testLogger())
	Expect(err).NotTo(HaveOccurred())
	Expect(srv.Storage()).To(Equal("jetstream:" + url))
	ctx, cancel := context.WithCancel(context.Background())
	Expect(srv.Start(ctx)).To(Succeed())
	in := &instance{srv: srv, cancel: cancel}
	DeferCleanup(in.stop)
	return in
}

// stop shuts the instance down gracefully (a no-op after kill finished).
func (in *instance) stop() {
	in.cancel()
	_ = in.srv.Wait()
}

// kill stops the instance hard: every client connection is closed at once,
// with no drain and no flush; then the process-level clean-up runs.
func (in *instance) kill() {
	in.srv.GRPC().Stop()
	_ = in.srv.Wait()
}

func dial(addr string) *grpc.ClientConn {
	GinkgoHelper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cc.Close)
	return cc
}

// client is a chat stream whose events a goroutine reads into a log
// (batches flattened into Message events).
type client struct {
	user   string
	st     chatv1.ChatService_ConnectClient
	cancel context.CancelFunc

	mu   sync.Mutex
	evs  []*chatv1.ServerEvent
	done chan struct{}
	err  error // the stream's end, set before done closes; nil for io.EOF
}

func connect(cc *grpc.ClientConn, user string) *client {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+user))
	st, err := chatv1.NewChatServiceClient(cc).Connect(ctx)
	Expect(err).NotTo(HaveOccurred())
	c := &client{user: user, st: st, cancel: cancel, done: make(chan struct{})}
	go c.read()
	DeferCleanup(func() {
		cancel()
		<-c.done
	})
	return c
}

func (c *client) read() {
	for {
		ev, err := c.st.Recv()
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
		if b := ev.GetBatch(); b != nil {
			for _, m := range b.GetMessages() {
				c.evs = append(c.evs, &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: m}})
			}
		} else {
			c.evs = append(c.evs, ev)
		}
		c.mu.Unlock()
	}
}

func (c *client) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *client) events() []*chatv1.ServerEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*chatv1.ServerEvent(nil), c.evs...)
}

func (c *client) messages(room string) []*chatv1.Message {
	var out []*chatv1.Message
	for _, ev := range c.events() {
		if m := ev.GetMessage(); m != nil && m.GetRoom() == room {
			out = append(out, m)
		}
	}
	return out
}

func (c *client) acks() []*chatv1.Ack {
	var out []*chatv1.Ack
	for _, ev := range c.events() {
		if a := ev.GetAck(); a != nil {
			out = append(out, a)
		}
	}
	return out
}

func (c *client) errors() []*chatv1.Error {
	var out []*chatv1.Error
	for _, ev := range c.events() {
		if e := ev.GetError(); e != nil {
			out = append(out, e)
		}
	}
	return out
}

func (c *client) joined(room string) []*chatv1.Joined {
	var out []*chatv1.Joined
	for _, ev := range c.events() {
		if j := ev.GetJoined(); j != nil && j.GetRoom() == room {
			out = append(out, j)
		}
	}
	return out
}

// join sends Join (resuming after *after when set) and waits for Joined.
func (c *client) join(room string, after *uint64) *chatv1.Joined {
	GinkgoHelper()
	n := len(c.joined(room))
	Expect(c.st.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: room, ResumeAfter: after}}})).To(Succeed())
	Eventually(func() int { return len(c.joined(room)) }).Should(BeNumerically(">", n), "Joined for %s", room)
	return c.joined(room)[n]
}

// send sends one message; an error means the stream is gone.
func (c *client) send(room, id string, senderSeq uint64) error {
	return c.st.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
		Room: room, ClientMsgId: id, SenderSeq: senderSeq, Body: fmt.Sprintf("%s says %s", c.user, id)}}})
}

// closeAndWait half-closes and reads to the end; returns the final error.
func (c *client) closeAndWait() error {
	GinkgoHelper()
	Expect(c.st.CloseSend()).To(Succeed())
	Eventually(c.done).Should(BeClosed())
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func ptr[T any](v T) *T { return &v }

// checkGapless reports the first message whose seq is not from, from+1, ...
func checkGapless(msgs []*chatv1.Message, from uint64) error {
	for i, m := range msgs {
		if want := from + uint64(i); m.GetSeq() != want {
			return fmt.Errorf("message %d of room %s has seq %d, want %d (gap or duplicate)", i, m.GetRoom(), m.GetSeq(), want)
		}
	}
	return nil
}

// checkSame reports the first position where got differs from ref in seq,
// sender or client_msg_id (ref may be longer).
func checkSame(ref, got []*chatv1.Message) error {
	if len(got) > len(ref) {
		return fmt.Errorf("%d messages, reference has %d", len(got), len(ref))
	}
	for i := range got {
		a, b := ref[i], got[i]
		if a.GetSeq() != b.GetSeq() || a.GetSender() != b.GetSender() || a.GetClientMsgId() != b.GetClientMsgId() {
			return fmt.Errorf("position %d: reference has seq %d %s/%s, got seq %d %s/%s", i,
				a.GetSeq(), a.GetSender(), a.GetClientMsgId(), b.GetSeq(), b.GetSender(), b.GetClientMsgId())
		}
	}
	return nil
}

// checkSenderFIFO reports a sender whose sender_seq goes down.
func checkSenderFIFO(msgs []*chatv1.Message) error {
	last := map[string]uint64{}
	for _, m := range msgs {
		if m.GetSenderSeq() <= last[m.GetSender()] {
			return fmt.Errorf("sender %s: sender_seq %d at room seq %d after %d", m.GetSender(), m.GetSenderSeq(), m.GetSeq(), last[m.GetSender()])
		}
		last[m.GetSender()] = m.GetSenderSeq()
	}
	return nil
}

// newLog opens a cluster.Log on its own connection to url, closed at cleanup.
func newLog(url string, mod func(*cluster.Config)) *cluster.Log {
	GinkgoHelper()
	nc, err := cluster.Connect(url, "test", nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	cfg := cluster.DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	l, err := cluster.New(nc, cfg, nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(l.Close)
	return l
}
