package collab_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/internal/collab/ot"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	"github.com/bidikit/bidikit/reference/cluster"
	"github.com/bidikit/bidikit/reference/collab"
	"github.com/bidikit/bidikit/reference/store"
)

// docLogs starts an in-process NATS server with JetStream and returns n
// collab document logs over it, each on its own connection (as n server
// instances have); everything is closed at cleanup.
func docLogs(n int) []*cluster.Log {
	GinkgoHelper()
	e, err := cluster.StartEmbedded(GinkgoT().TempDir(), "127.0.0.1:0", nil)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(e.Shutdown)
	logs := make([]*cluster.Log, n)
	for i := range logs {
		nc, err := cluster.Connect(e.ClientURL(), fmt.Sprintf("collab-%d", i), nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(nc.Close)
		cfg := cluster.DefaultConfig()
		cfg.Kind = "collab"
		cfg.Memory = true
		lg, err := cluster.New(nc, cfg, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(lg.Close)
		logs[i] = lg
	}
	return logs
}

// replayShared rebuilds a document's text from its shared log alone.
func replayShared(ctx context.Context, lg *cluster.Log, doc string) (string, uint64) {
	GinkgoHelper()
	h, err := lg.Head(ctx, doc)
	Expect(err).NotTo(HaveOccurred())
	rope := &ot.Rope{}
	Expect(lg.Range(ctx, doc, 1, h.Last, func(seq uint64, payload []byte) error {
		rop := &collabv1.RemoteOp{}
		if err := proto.Unmarshal(payload, rop); err != nil {
			return err
		}
		o, err := collab.FromProto(rop.GetOp())
		if err != nil {
			return err
		}
		return rope.Apply(o)
	})).To(Succeed())
	return rope.String(), h.Last
}

// gatedLog is a SharedLog whose feeds can be held back (as a slow instance
// sees the log late) and which counts the appends that lost a race.
type gatedLog struct {
	collab.SharedLog
	conflicts atomic.Int64

	mu   sync.Mutex // guards held and buf; held while delivering, so order is kept
	held bool
	buf  []func()
}

func (g *gatedLog) hold() {
	g.mu.Lock()
	g.held = true
	g.mu.Unlock()
}

// release delivers what was held back, in order, and lets the feed through.
func (g *gatedLog) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, f := range g.buf {
		f()
	}
	g.buf, g.held = nil, false
}

func (g *gatedLog) Follow(doc string, after uint64, fn func(uint64, []byte), onErr func(error)) (func(), error) {
	return g.SharedLog.Follow(doc, after, func(seq uint64, payload []byte) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.held {
			g.buf = append(g.buf, func() { fn(seq, payload) })
			return
		}
		fn(seq, payload)
	}, onErr)
}

func (g *gatedLog) Append(doc, key string, payload []byte, expect uint64, done func(uint64, bool, error)) {
	g.SharedLog.Append(doc, key, payload, expect, func(seq uint64, dup bool, err error) {
		if errors.Is(err, store.ErrConflict) {
			g.conflicts.Add(1)
		}
		done(seq, dup, err)
	})
}

var _ = Describe("Shared documents (several instances over NATS JetStream)", func() {
	var _ collab.SharedLog = (*cluster.Log)(nil)

	It("converges editors spread over three instances, hopping between them, to the JetStream log", func(ctx SpecContext) {
		seed := uint64(time.Now().UnixNano())
		By(fmt.Sprintf("seed %d", seed))
		logs := docLogs(3)
		var srvs []*server
		var ccs []*grpc.ClientConn
		for _, lg := range logs {
			srv := startShared(testConfig(), lg)
			srvs = append(srvs, srv)
			ccs = append(ccs, dial(srv.addr))
		}
		text, version := convergeEditors(ctx, seed, ccs, srvs[0].svc, func() uint64 {
			h, err := logs[0].Head(ctx, "shared")
			Expect(err).NotTo(HaveOccurred())
			return h.Last
		})
		Expect(version).To(BeNumerically(">", 20))
		for i, srv := range srvs {
			Eventually(func() (string, error) {
				t, _, err := srv.svc.Text("shared")
				return t, err
			}).WithContext(ctx).Should(Equal(text), "instance %d", i)
		}
		logText, logVersion := replayShared(ctx, logs[1], "shared")
		Expect(logVersion).To(Equal(version), "the log's last seq is the document version")
		Expect(logText).To(Equal(text), "seed %d", seed)
	}, SpecTimeout(120*time.Second))

	It("transforms and appends again when another instance appended first", func(ctx SpecContext) {
		logs := docLogs(2)
		gated := &gatedLog{SharedLog: logs[1]}
		a := startShared(testConfig(), logs[0])
		b := startShared(testConfig(), gated)
		sa := openStream(ctx, dial(a.addr), "ann")
		sb := openStream(ctx, dial(b.addr), "bob")
		sa.open("d", "ca", nil)
		Expect(sa.recv().GetOpened().GetVersion()).To(BeZero())
		sb.open("d", "cb", nil)
		Expect(sb.recv().GetOpened().GetVersion()).To(BeZero())

		By("B sees the log late; A appends version 1")
		gated.hold()
		sa.submit("d", "ca", 1, 0, must(ot.Splice(0, 0, 0, "hello")))
		Expect(sa.recv().GetAck().GetVersion()).To(Equal(uint64(1)))

		By("B's op, based on version 0, loses the race, then is transformed over version 1")
		sb.submit("d", "cb", 1, 0, must(ot.Splice(0, 0, 0, ">")))
		Eventually(gated.conflicts.Load).WithContext(ctx).Should(BeNumerically(">=", 1))
		gated.release()
		var ack *collabv1.Ack
		for ack == nil {
			ev := sb.recv()
			if op := ev.GetOp(); op != nil {
				Expect(op.GetVersion()).To(Equal(uint64(1)))
			}
			ack = ev.GetAck()
		}
		Expect(ack.GetVersion()).To(Equal(uint64(2)))
		Expect(ack.GetDuplicate()).To(BeFalse())
		rop := sa.recv().GetOp()
		Expect(rop.GetVersion()).To(Equal(uint64(2)))
		Expect(rop.GetClientId()).To(Equal("cb"))

		for _, srv := range []*server{a, b} {
			Eventually(func() (string, error) {
				t, _, err := srv.svc.Text("d")
				return t, err
			}).WithContext(ctx).Should(Equal("hello>"))
		}
		text, v := replayShared(ctx, logs[0], "d")
		Expect(text).To(Equal("hello>"))
		Expect(v).To(Equal(uint64(2)))
		Expect(sa.finish()).To(Succeed())
		Expect(sb.finish()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("acks a resend on another instance as a duplicate of the version stored through the first", func(ctx SpecContext) {
		logs := docLogs(2)
		a := startShared(testConfig(), logs[0])
		b := startShared(testConfig(), logs[1])
		sa := openStream(ctx, dial(a.addr), "ann")
		sa.open("d", "ca", nil)
		Expect(sa.recv().GetOpened()).NotTo(BeNil())
		sa.submit("d", "ca", 1, 0, must(ot.Splice(0, 0, 0, "x")))
		Expect(sa.recv().GetAck().GetVersion()).To(Equal(uint64(1)))
		Expect(sa.finish()).To(Succeed())

		By("the same client resends seq 1 through instance B, which has never loaded the document")
		sb := openStream(ctx, dial(b.addr), "ann")
		sb.open("d", "ca", u64(0))
		Expect(sb.recv().GetOpened().GetVersion()).To(Equal(uint64(1)))
		Expect(sb.recv().GetOp().GetReplay()).To(BeTrue())
		sb.submit("d", "ca", 1, 0, must(ot.Splice(0, 0, 0, "x")))
		ack := sb.recv().GetAck()
		Expect(ack.GetDuplicate()).To(BeTrue())
		Expect(ack.GetVersion()).To(Equal(uint64(1)))
		text, _, err := b.svc.Text("d")
		Expect(err).NotTo(HaveOccurred())
		Expect(text).To(Equal("x"), "the resend is not applied twice")
		Expect(sb.finish()).To(Succeed())
	}, SpecTimeout(30*time.Second))
})

func must(o ot.Op, err error) ot.Op {
	GinkgoHelper()
	Expect(err).NotTo(HaveOccurred())
	return o
}
