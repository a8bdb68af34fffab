// Package plainserver is the comparator of `bidikit bench conn-ramp --vs
// plain`: the least a chat.v1 server on grpc-go costs per idle member. It is
// grpc-go with its defaults (grpc.NewServer() with no options: 32 KiB read
// and write buffers, no shared write buffer, 64 KiB windows, keepalive every
// 2 h) and a Connect handler that answers each Join with Joined and
// otherwise only receives: one goroutine per stream, no rooms, no queues,
// no state. Whatever the reference spends per member above it is the
// reference's own (its services, interceptors, queues and options).
//
// It serves the admin endpoints conn-ramp reads: /metrics with the process
// collector (process_resident_memory_bytes) and /debug/pprof/.
package plainserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// ReadyPrefix starts the line Serve prints once both ports listen; it is
// `bidikit serve`'s, so harness/spawn starts this server as it starts the
// reference.
const ReadyPrefix = "bidikit serve: listening "

// Serve listens for gRPC on addr and admin HTTP on adminAddr, prints the
// ready line to out, and serves until ctx is done; then it stops hard (a
// comparator has nothing to drain). It returns what failed, if anything.
func Serve(ctx context.Context, addr, adminAddr string, out io.Writer) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("plain server: listen for gRPC on %s: %w", addr, err)
	}
	alis, err := net.Listen("tcp", adminAddr)
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("plain server: listen for admin HTTP on %s: %w", adminAddr, err)
	}
	gs := grpc.NewServer() // grpc-go's defaults: the point of the comparator
	chatv1.RegisterChatServiceServer(gs, chat{})
	admin := &http.Server{Handler: adminMux(), ReadHeaderTimeout: 10 * time.Second}

	errs := make(chan error, 2)
	go func() { errs <- gs.Serve(lis) }()
	go func() {
		if err := admin.Serve(alis); !errors.Is(err, http.ErrServerClosed) {
			errs <- err
			return
		}
		errs <- nil
	}()
	fmt.Fprintf(out, "%sgrpc=%s admin=%s storage=none comparator=plain-grpc\n", ReadyPrefix, lis.Addr(), alis.Addr())

	var failed []error
	got := 0
	select {
	case <-ctx.Done():
	case err := <-errs:
		failed, got = append(failed, err), 1
	}
	gs.Stop()
	_ = admin.Close()
	for ; got < 2; got++ { // both goroutines have returned
		failed = append(failed, <-errs)
	}
	return errors.Join(failed...)
}

// adminMux serves /metrics (Go and process collectors) and /debug/pprof/.
func adminMux() *http.ServeMux {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return mux
}

// chat is the Connect handler: Joined for every Join, nothing else.
type chat struct {
	chatv1.UnimplementedChatServiceServer
}

// Connect receives until the client ends the stream, answering each Join
// with Joined on the handler's own goroutine (the only one per stream).
func (chat) Connect(s grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]) error {
	for {
		ev, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if j := ev.GetJoin(); j != nil {
			if err := s.Send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{Joined: &chatv1.Joined{Room: j.GetRoom()}}}); err != nil {
				return err
			}
		}
	}
}
