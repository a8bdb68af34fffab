package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/bidikit/bidikit/harness/spawn"
	"github.com/bidikit/bidikit/internal/chatclient"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// ScrapeRSS reads process_resident_memory_bytes from adminURL's /metrics
// (the Prometheus process collector; Linux only on the server side).
func ScrapeRSS(ctx context.Context, adminURL string) (int64, error) {
	v, err := scrapeMetric(ctx, adminURL, "process_resident_memory_bytes")
	return int64(v), err
}

// scrapeMetric reads the unlabelled sample name from adminURL's /metrics.
func scrapeMetric(ctx context.Context, adminURL, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(adminURL, "/")+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape %s/metrics: %w", adminURL, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("scrape %s/metrics: %s %q: %w", adminURL, name, v, err)
			}
			return f, nil
		}
	}
	return 0, fmt.Errorf("scrape %s/metrics: no %s (is the process collector registered?)", adminURL, name)
}

// runRamp opens chat streams (Connect + Join) in steps of p.Step every
// p.StepEvery, p.StreamsPerConn per TCP connection, until a stream fails,
// p.Clients streams are held, or p.Duration has passed. It then reads the
// server's memory and reports streams held and bytes per stream over the
// baseline taken before the first stream.
//
// Memory: with p.Spawn the server is a `bidikit serve` subprocess
// (harness/spawn) and its own RSS is read from its admin /metrics; with
// --target and an admin URL the same; in-process it is the Go runtime's
// memory of the whole process after a GC, so it counts the client side of
// every stream too (an upper bound for the server's share).
func runRamp(ctx context.Context, target, admin string, p Params) (Result, error) {
	if p.Vs == VsPlain {
		return rampRounds(ctx, p)
	}
	return rampOnce(ctx, target, admin, p, false)
}

// rampOnce is one conn-ramp; plain spawns the plain grpc-go comparator
// (bench/plainserver) instead of the reference.
func rampOnce(ctx context.Context, target, admin string, p Params, plain bool) (Result, error) {
	res := Result{Tool: "bidikit-loop", Params: map[string]string{
		"cap": strconv.Itoa(p.Clients), "step": strconv.Itoa(p.Step), "step_every": p.StepEvery.String(),
		"streams_per_conn": strconv.Itoa(p.StreamsPerConn), "max_duration": p.Duration.String(),
		"hold": p.Hold.String()}}
	inProcess := p.Target == "" && p.Spawn == ""
	if p.Spawn != "" && p.Target == "" {
		args := []string{"--max-connections", strconv.Itoa(p.Clients/max(p.StreamsPerConn, 1) + 10), "--log-level", "warn"}
		res.Params["server"] = "reference"
		if plain {
			args = append(args, "--comparator", VsPlain)
			res.Params["server"] = VsPlain
		}
		srv, err := spawn.Start(ctx, spawn.Options{Binary: p.Spawn, StopGrace: 5 * time.Second, Args: args})
		if err != nil {
			return res, fmt.Errorf("conn-ramp: spawn server: %w", err)
		}
		defer srv.Stop()
		target, admin = srv.Addr(), "http://"+srv.AdminAddr()
		res.Target = "spawned:" + target
	}
	memory := func() (int64, string) {
		if inProcess {
			runtime.GC()
			return ProcessMemory(), "in-process Go runtime memory (server + clients)"
		}
		if admin == "" {
			return 0, ""
		}
		rss, err := ScrapeRSS(ctx, admin)
		if err != nil {
			return 0, ""
		}
		return rss, "server RSS from admin /metrics"
	}
	before, how := memory()
	goroutines := func() float64 {
		if inProcess || admin == "" {
			return 0
		}
		g, err := scrapeMetric(ctx, admin, "go_goroutines")
		if err != nil {
			return 0
		}
		return g
	}
	goBefore := goroutines()

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prefix := "bench-ramp-" + runID()
	var (
		conns   []*grpc.ClientConn
		streams []chatv1.ChatService_ConnectClient
		holders sync.WaitGroup
	)
	defer func() {
		for _, s := range streams {
			_ = s.CloseSend()
		}
		done := make(chan struct{})
		go func() { holders.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		cancel()
		holders.Wait()
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	open := func(k int) (chatv1.ChatService_ConnectClient, error) {
		if k%p.StreamsPerConn == 0 {
			cc, err := dial(target)
			if err != nil {
				return nil, err
			}
			conns = append(conns, cc)
		}
		cc := conns[len(conns)-1]
		user := "ramp-" + strconv.Itoa(k)
		s, err := chatclient.Connect(rctx, cc, user)
		if err != nil {
			return nil, err
		}
		if err := s.Send(chatclient.Join(prefix+"-"+strconv.Itoa(k%100), nil)); err != nil {
			return nil, err
		}
		return s, nil
	}
	began := time.Now()
	stop := "cap reached"
	var failure error
ramp:
	for len(streams) < p.Clients {
		if time.Since(began) > p.Duration {
			stop = "max duration reached"
			break
		}
		stepStart := time.Now()
		n := min(p.Step, p.Clients-len(streams))
		var step []chatv1.ChatService_ConnectClient
		for range n {
			s, err := open(len(streams) + len(step))
			if err != nil {
				failure = err
				break
			}
			step = append(step, s)
		}
		// Each stream counts as held once its Joined arrives.
		joinedC := make(chan error, len(step))
		for _, s := range step {
			holders.Go(func() {
				ev, err := s.Recv()
				if err == nil && ev.GetJoined() == nil && ev.GetError() != nil {
					err = fmt.Errorf("join refused: %s", ev.GetError().Message)
				}
				joinedC <- err
				for err == nil { // hold: read until the stream ends
					_, err = s.Recv()
				}
			})
		}
		streams = append(streams, step...)
		for range step {
			select {
			case err := <-joinedC:
				if err != nil && failure == nil {
					failure = err
				}
			case <-time.After(10 * time.Second):
				failure = errors.New("a stream's Joined did not arrive within 10s")
			case <-ctx.Done():
				return res, ctx.Err()
			}
			if failure != nil {
				break
			}
		}
		if failure != nil {
			stop = "error: " + failure.Error()
			break ramp
		}
		if d := p.StepEvery - time.Since(stepStart); d > 0 {
			time.Sleep(d)
		}
	}
	res.DurationS = time.Since(began).Seconds()
	held := len(streams)
	if failure != nil {
		held = max(held-1, 0) // the failed one is not held
	}
	if p.Hold > 0 {
		t := time.NewTimer(p.Hold)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		}
	}
	after, _ := memory()
	goAfter := goroutines()
	res.Extra = map[string]float64{"streams_held": float64(held), "connections": float64(len(conns))}
	res.Notes = append(res.Notes, "stopped: "+stop)
	if goAfter > 0 && held > 0 {
		res.Extra["goroutines_per_stream"] = (goAfter - goBefore) / float64(held)
	}
	if how != "" && held > 0 {
		res.Extra["memory_before_bytes"] = float64(before)
		res.Extra["memory_after_bytes"] = float64(after)
		res.Extra["bytes_per_stream"] = float64(after-before) / float64(held)
		res.Notes = append(res.Notes, "memory: "+how)
		if !inProcess {
			res.ServerRSSBytes = after
		}
	}
	return res, nil
}
