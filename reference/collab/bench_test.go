package collab_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bidikit/bidikit/internal/collab/ot"
	"github.com/bidikit/bidikit/internal/collab/trace"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	"github.com/bidikit/bidikit/reference/store"
)

// replayTrace replays the first limit patches of a sequential trace through
// a fresh in-process server by one editor, pipelined without bound, and
// returns the server's text and version (Gomega flavour for specs).
func replayTrace(ctx context.Context, tr *trace.Trace, limit int) (string, uint64) {
	GinkgoHelper()
	text, v, err := replayTraceErr(ctx, tr, limit, 0)
	Expect(err).NotTo(HaveOccurred())
	return text, v
}

// replayTraceErr pipelines the submits: the editor is alone on the
// document, so op n is sent against version n-1 (its own previous op,
// assumed committed) with at most window ops unacknowledged (0 = without
// waiting for acks at all); a reader goroutine takes the acks and stops at
// the last one. Any Error event fails the replay.
func replayTraceErr(ctx context.Context, tr *trace.Trace, limit, window int) (string, uint64, error) {
	cfg := testConfig()
	cfg.QueueEvents, cfg.QueueBytes = 1<<20, 1<<30
	// The store's default retention (10,000 records, as `bidikit bench`
	// and `bidikit serve` use), so the replay runs far past it: appending
	// past retention must stay O(1), which this benchmark would expose.
	srv, stop, err := newServer(cfg, store.NewMemory(0), io.Discard)
	if err != nil {
		return "", 0, err
	}
	defer stop()
	cc, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", 0, err
	}
	defer cc.Close()
	sctx, cancel := context.WithCancel(withUser(ctx, "typist"))
	defer cancel()
	st, err := collabv1.NewCollabServiceClient(cc).Edit(sctx)
	if err != nil {
		return "", 0, err
	}
	if err := st.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: "trace", ClientId: "t1"}}}); err != nil {
		return "", 0, err
	}
	if ev, err := st.Recv(); err != nil || ev.GetOpened() == nil {
		return "", 0, fmt.Errorf("open: %v %v", ev, err)
	}
	total := uint64(min(limit, tr.Patches()))
	acked := make(chan error, 1)
	var slots chan struct{} // one per unacknowledged op; nil = no window
	if window > 0 {
		slots = make(chan struct{}, window)
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			ev, err := st.Recv()
			if err != nil {
				acked <- err
				return
			}
			if e := ev.GetError(); e != nil {
				acked <- fmt.Errorf("error event: %v", e)
				return
			}
			if ack := ev.GetAck(); ack != nil {
				if ack.GetVersion() == total {
					acked <- nil
					return
				}
				if slots != nil {
					<-slots
				}
			}
		}
	}()
	rope := ot.NewRope(tr.StartContent)
	var n uint64
send:
	for _, x := range tr.Txns {
		for _, p := range x.Patches {
			if n == total {
				break send
			}
			o, err := ot.Splice(rope.Len(), p.Pos, p.Del, p.Ins)
			if err != nil {
				return "", 0, err
			}
			if err := rope.Apply(o); err != nil {
				return "", 0, err
			}
			if slots != nil {
				select {
				case slots <- struct{}{}:
				case <-readerDone: // failed or, impossibly, done early
					break send
				case <-ctx.Done():
					return "", 0, ctx.Err()
				}
			}
			if err := st.Send(submitEvent("trace", "t1", n+1, n, o)); err != nil {
				return "", 0, fmt.Errorf("send %d: %w", n+1, err)
			}
			n++
		}
	}
	select {
	case err := <-acked:
		if err != nil {
			return "", 0, err
		}
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
	_ = st.CloseSend()
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				return "", 0, err
			}
			break
		}
	}
	text, v, err := srv.svc.Text("trace")
	if err == nil && text != rope.String() {
		err = fmt.Errorf("server text (%d code points) differs from the editor's (%d)", len([]rune(text)), rope.Len())
	}
	return text, v, err
}

// BenchmarkAutomergePaperGRPC replays the whole automerge-paper trace
// (259,778 edits) through gRPC by one editor, checking endContent. One
// iteration is the whole trace; target <= 10 s. window=64 is the workload
// of `bidikit bench collab-trace` (its default --window); unbounded sends
// without waiting for acks.
//
//	go test -run '^$' -bench AutomergePaperGRPC -benchtime 1x ./reference/collab/
func BenchmarkAutomergePaperGRPC(b *testing.B) {
	for _, w := range []struct {
		name   string
		window int
	}{{"window=64", 64}, {"window=unbounded", 0}} {
		b.Run(w.name, func(b *testing.B) { benchmarkAutomergePaper(b, w.window) })
	}
}

func benchmarkAutomergePaper(b *testing.B, window int) {
	path, err := trace.Path("automerge-paper.json.gz")
	if err != nil {
		b.Fatal("fixture missing: the automerge-paper editing trace (testdata/traces/automerge-paper.json.gz): " + err.Error())
	}
	tr, err := trace.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ResetTimer()
	for b.Loop() {
		text, v, err := replayTraceErr(ctx, tr, tr.Patches(), window)
		if err != nil {
			b.Fatal(err)
		}
		if text != tr.EndContent || v != uint64(tr.Patches()) {
			b.Fatalf("ended at version %d with %d code points, want %d and endContent", v, len([]rune(text)), tr.Patches())
		}
	}
	b.ReportMetric(float64(tr.Patches())*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
