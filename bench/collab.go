package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/internal/collab/ot"
	"github.com/bidikit/bidikit/internal/collab/trace"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	"github.com/bidikit/bidikit/reference/collab"
)

// TraceMismatchError says that the document's final text differs from the
// trace's endContent: where (first differing code point) and around it.
type TraceMismatchError struct {
	Trace, Document string
	// Offset is the first differing position in code points.
	Offset          int
	WantLen, GotLen int
	// Want and Got are up to 40 code points of each text from Offset.
	Want, Got string
}

func (e *TraceMismatchError) Error() string {
	return fmt.Sprintf("collab-trace %s: document %q differs from the trace's endContent at code point %d (want %d code points, got %d): want %q, got %q",
		e.Trace, e.Document, e.Offset, e.WantLen, e.GotLen, e.Want, e.Got)
}

// CompareText returns nil when got equals want, else a *TraceMismatchError
// locating the first difference.
func CompareText(tracePath, doc, want, got string) error {
	if want == got {
		return nil
	}
	w, g := []rune(want), []rune(got)
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	snip := func(r []rune) string { return string(r[min(i, len(r)):min(i+40, len(r))]) }
	return &TraceMismatchError{Trace: tracePath, Document: doc, Offset: i, WantLen: len(w), GotLen: len(g), Want: snip(w), Got: snip(g)}
}

// runCollabTrace replays a sequential editing trace into a fresh document
// over one Edit stream, with up to p.Window operations in flight: each
// patch becomes a splice against the version it will be committed after
// (one client, so no transformation is needed). Then it reads the
// document back on a second stream and compares it with endContent.
func runCollabTrace(ctx context.Context, target string, p Params) (Result, error) {
	tr, err := trace.Load(p.Trace)
	if err != nil {
		return Result{}, err
	}
	if tr.Concurrent() {
		return Result{}, fmt.Errorf("collab-trace: %s is a concurrent trace; replay needs a sequential one", p.Trace)
	}
	doc := "bench-trace-" + runID()
	res := Result{Tool: "bidikit-loop", LatencyOf: "submit-to-ack",
		Params: map[string]string{"trace": p.Trace, "patches": strconv.Itoa(tr.Patches()), "window": strconv.Itoa(p.Window), "document": doc}}
	cc, err := dial(target)
	if err != nil {
		return res, err
	}
	defer cc.Close()
	client := collabv1.NewCollabServiceClient(cc)
	const user = "bench-editor"
	sctx, cancel := context.WithCancel(withToken(ctx, user))
	defer cancel()
	stream, err := client.Edit(sctx)
	if err != nil {
		return res, fmt.Errorf("collab-trace: open stream: %w", err)
	}
	if err := stream.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: doc, ClientId: user}}}); err != nil {
		return res, fmt.Errorf("collab-trace: open %s: %w", doc, err)
	}
	ev, err := stream.Recv()
	if err != nil {
		return res, fmt.Errorf("collab-trace: open %s: %w", doc, err)
	}
	opened := ev.GetOpened()
	if opened == nil {
		return res, fmt.Errorf("collab-trace: open %s: got %v, want Opened", doc, ev)
	}

	// Ops: the start content as one insert, then every non-empty patch.
	type splice struct {
		pos, del int
		ins      string
	}
	var ops []splice
	if tr.StartContent != "" {
		ops = append(ops, splice{ins: tr.StartContent})
	}
	for _, t := range tr.Txns {
		for _, pt := range t.Patches {
			if pt.Del > 0 || pt.Ins != "" {
				ops = append(ops, splice{pt.Pos, pt.Del, pt.Ins})
			}
		}
	}
	hist := NewHistogram()
	slots := make(chan struct{}, p.Window)
	acked := make(chan struct{})
	began := time.Now()
	g := new(errgroup.Group)
	recvLoop := func() error { // owns hist
		n := 0
		for n < len(ops) {
			ev, err := stream.Recv()
			if err != nil {
				return fmt.Errorf("collab-trace: after %d of %d acks: %w", n, len(ops), err)
			}
			switch e := ev.Event.(type) {
			case *collabv1.ServerEvent_Ack:
				n++
				if e.Ack.ClientSentUnixNanos > 0 {
					us := max((time.Now().UnixNano()-e.Ack.ClientSentUnixNanos)/1e3, 1)
					_ = hist.RecordValue(min(us, hist.HighestTrackableValue()))
				}
				<-slots
			case *collabv1.ServerEvent_Error:
				return fmt.Errorf("collab-trace: operation %d refused: %s: %s (field %s)", n+1, codes.Code(e.Error.Code), e.Error.Message, e.Error.Field)
			}
		}
		close(acked)
		return nil
	}
	g.Go(func() error {
		err := recvLoop()
		if err != nil {
			cancel() // unblocks the send loop
		}
		return err
	})
	g.Go(func() error { // send loop: owns the length and versions
		length := utf8.RuneCountInString(opened.Text)
		base := opened.Version
		for i, s := range ops {
			select {
			case slots <- struct{}{}:
			case <-acked:
				return nil
			case <-sctx.Done():
				return sctx.Err()
			}
			op, err := ot.Splice(length, s.pos, s.del, s.ins)
			if err != nil {
				cancel()
				return fmt.Errorf("collab-trace: patch %d of %s does not fit the text: %w", i+1, p.Trace, err)
			}
			err = stream.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Submit{Submit: &collabv1.Submit{
				Document: doc, BaseVersion: base, ClientId: user, ClientSeq: uint64(i + 1),
				Op: collab.ToProto(op), ClientSentUnixNanos: time.Now().UnixNano()}}})
			if err != nil {
				return fmt.Errorf("collab-trace: submit %d: %w", i+1, err)
			}
			base++
			length = length - s.del + utf8.RuneCountInString(s.ins)
		}
		return nil
	})
	err = g.Wait()
	elapsed := time.Since(began)
	_ = stream.CloseSend()
	for { // read to io.EOF (bounded by the stream's context)
		if _, rerr := stream.Recv(); rerr != nil {
			break
		}
	}
	res.DurationS = elapsed.Seconds()
	res.Messages = int64(len(ops))
	res.LatencyMS = Summarize(hist)
	if err != nil {
		return res, err
	}

	text, version, err := readDoc(ctx, client, doc)
	if err != nil {
		return res, err
	}
	res.Extra = map[string]float64{"final_version": float64(version), "final_code_points": float64(utf8.RuneCountInString(text))}
	if err := CompareText(p.Trace, doc, tr.EndContent, text); err != nil {
		res.Notes = append(res.Notes, "FAIL: "+err.Error())
		return res, err
	}
	res.Notes = append(res.Notes, fmt.Sprintf("final text equals the trace's endContent (%d code points)", utf8.RuneCountInString(text)))
	return res, nil
}

// readDoc opens doc on a fresh stream and returns its snapshot text.
func readDoc(ctx context.Context, client collabv1.CollabServiceClient, doc string) (string, uint64, error) {
	ctx, cancel := context.WithTimeout(withToken(ctx, "bench-reader"), 30*time.Second)
	defer cancel()
	stream, err := client.Edit(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("collab-trace: read back %s: %w", doc, err)
	}
	if err := stream.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: doc, ClientId: "bench-reader"}}}); err != nil {
		return "", 0, fmt.Errorf("collab-trace: read back %s: %w", doc, err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return "", 0, fmt.Errorf("collab-trace: read back %s: %w", doc, err)
		}
		if o := ev.GetOpened(); o != nil {
			if !o.Snapshot {
				return "", 0, errors.New("collab-trace: read back: Opened without a snapshot")
			}
			_ = stream.CloseSend()
			for {
				if _, err := stream.Recv(); err != nil {
					if err != io.EOF {
						cancel()
					}
					break
				}
			}
			return o.Text, o.Version, nil
		}
	}
}
