package engine_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/harness/engine"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/auth"
)

// recorder is a minimal chat server that records, from the server's side,
// how each stream ended and what it received. It answers Join with Joined
// (head 10) and Send with Ack; with push set it writes messages to every
// stream as fast as flow control lets it.
type recorder struct {
	chatv1.UnimplementedChatServiceServer
	push bool
	// silentProbe: the engine's preflight probe stream is left open and
	// unanswered until the client ends it (set before the run).
	silentProbe bool
	probes      atomic.Int64 // preflight probe streams seen

	mu         sync.Mutex
	ends       []string // "eof", "canceled", "undecodable", "other:<code>"
	resumes    []uint64 // resume_after of every Join that had one
	maxBody    int
	sends      int
	lastPushAt map[int]time.Time
	streams    int
	connEnds   atomic.Int64
	connBegins atomic.Int64
}

func (r *recorder) Connect(st grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]) error {
	if md, _ := metadata.FromIncomingContext(st.Context()); len(md.Get(engine.PreflightHeader)) > 0 {
		// The engine's preflight probe, not a client: counted apart.
		r.probes.Add(1)
		if r.silentProbe {
			<-st.Context().Done()
			return st.Context().Err()
		}
		for {
			if _, err := st.Recv(); err != nil {
				return nil
			}
		}
	}
	r.mu.Lock()
	id := r.streams
	r.streams++
	r.mu.Unlock()
	// The writer stops (cancel) before the handler waits for it.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	out := make(chan *chatv1.ServerEvent, 64)
	wg.Go(func() {
		var seq uint64 = 10
		for {
			var m *chatv1.ServerEvent
			select {
			case <-ctx.Done():
				return
			case m = <-out:
			default:
				if !r.push {
					select {
					case <-ctx.Done():
						return
					case m = <-out:
					}
				} else {
					seq++
					m = &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: &chatv1.Message{
						Room: "room-0", Seq: seq, Sender: "server", Body: strings.Repeat("p", 1024)}}}
				}
			}
			if err := st.Send(m); err != nil {
				return
			}
			if r.push {
				r.mu.Lock()
				r.lastPushAt[id] = time.Now()
				r.mu.Unlock()
			}
		}
	})
	for {
		in, err := st.Recv()
		if err != nil {
			r.mu.Lock()
			switch {
			case err == io.EOF:
				r.ends = append(r.ends, "eof")
			case status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled):
				r.ends = append(r.ends, "canceled")
			case strings.Contains(err.Error(), "unmarshal"):
				r.ends = append(r.ends, "undecodable")
			default:
				r.ends = append(r.ends, "other:"+status.Code(err).String())
			}
			r.mu.Unlock()
			if err == io.EOF {
				return nil
			}
			return status.Error(codes.InvalidArgument, "bad stream")
		}
		switch ev := in.Event.(type) {
		case *chatv1.ClientEvent_Join:
			r.mu.Lock()
			if ev.Join.ResumeAfter != nil {
				r.resumes = append(r.resumes, *ev.Join.ResumeAfter)
			}
			r.mu.Unlock()
			out <- &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{Joined: &chatv1.Joined{Room: ev.Join.Room, HeadSeq: 10, ResumeComplete: true}}}
		case *chatv1.ClientEvent_Send:
			r.mu.Lock()
			r.sends++
			r.maxBody = max(r.maxBody, len(ev.Send.Body))
			r.mu.Unlock()
			select {
			case out <- &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{Room: ev.Send.Room, ClientMsgId: ev.Send.ClientMsgId, Seq: 1}}}:
			default:
			}
		}
	}
}

func (r *recorder) Ends() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ends...)
}

func (r *recorder) Resumes() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.resumes...)
}

// Probes is the number of preflight probe streams seen.
func (r *recorder) Probes() int { return int(r.probes.Load()) }

func (r *recorder) MaxBody() int    { r.mu.Lock(); defer r.mu.Unlock(); return r.maxBody }
func (r *recorder) Sends() int      { r.mu.Lock(); defer r.mu.Unlock(); return r.sends }
func (r *recorder) ConnEnds() int64 { return r.connEnds.Load() }

// ConnBegins is the number of connections accepted; Streams of streams.
func (r *recorder) ConnBegins() int64 { return r.connBegins.Load() }
func (r *recorder) Streams() int      { r.mu.Lock(); defer r.mu.Unlock(); return r.streams }

// LongestStall is the longest time any pushing stream has not managed a write.
func (r *recorder) LongestStall() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var worst time.Duration
	for _, t := range r.lastPushAt {
		worst = max(worst, time.Since(t))
	}
	return worst
}

// TagConn/HandleConn implement stats.Handler to count connections.
func (r *recorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (r *recorder) HandleRPC(context.Context, stats.RPCStats)                         {}
func (r *recorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (r *recorder) HandleConn(_ context.Context, s stats.ConnStats) {
	switch s.(type) {
	case *stats.ConnEnd:
		r.connEnds.Add(1)
	case *stats.ConnBegin:
		r.connBegins.Add(1)
	}
}

// startRecorder serves a recorder on a loopback port; stop ends it.
func startRecorder(push bool) (*recorder, string, func()) {
	r := &recorder{push: push, lastPushAt: map[int]time.Time{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	s := grpc.NewServer(grpc.StatsHandler(r), grpc.StreamInterceptor(auth.StreamInterceptor(auth.DevMode{})))
	chatv1.RegisterChatServiceServer(s, r)
	go func() { _ = s.Serve(lis) }()
	return r, lis.Addr().String(), s.Stop
}
