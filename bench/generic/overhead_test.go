package generic

import (
	"context"
	"net"
	"os"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"
)

// BenchmarkDriverOverhead runs a saturating round of bidikit's driver and
// a round of plain ghz alternately against grpc-go's interop TestService
// and reports each one's client CPU time per message (getrusage of this
// process, so it is meaningful only with the server in another process:
// set GENERIC_BENCH_TARGET=host:port; without it an in-process server is
// started and its CPU is counted too) and messages/s. CPU per message is
// far less sensitive to other load on the machine than wall-clock rates.
//
//	GENERIC_BENCH_TARGET=127.0.0.1:50051 go test -run '^$' -bench DriverOverhead -benchtime 4x ./bench/generic/
func BenchmarkDriverOverhead(b *testing.B) {
	target := os.Getenv("GENERIC_BENCH_TARGET")
	if target == "" {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		s := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
		reflection.Register(s)
		go func() { _ = s.Serve(lis) }()
		defer s.Stop()
		target = lis.Addr().String()
	}
	c := Defaults(Config{
		Call: "grpc.testing.TestService/FullDuplexCall", Target: target, Insecure: true,
		Data:        `{"response_parameters":[{"size":64}],"payload":{"body":"AAAA"}}`,
		Concurrency: 100, Connections: 1, StreamCallCount: 1000, Duration: 3 * time.Second,
	})
	ctx := context.Background()
	creds, err := c.TransportCredentials()
	if err != nil {
		b.Fatal(err)
	}
	cc, err := Preflight(ctx, c.Target, creds, c.DialTimeout)
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	md, err := resolveMethod(ctx, c, cc)
	if err != nil {
		b.Fatal(err)
	}
	drv, err := newDriver(c, md, creds)
	if err != nil {
		b.Fatal(err)
	}
	var cpu [2]time.Duration
	var msgs [2]int64
	var wall [2]time.Duration
	names := [2]string{"bidikit", "ghz"}
	measure := func(i int, f func() (round, error)) {
		before := cpuTime()
		var (
			r   round
			err error
		)
		// Labelled so a -cpuprofile splits by tool: pprof -tagfocus tool=ghz.
		pprof.Do(ctx, pprof.Labels("tool", names[i]), func(context.Context) { r, err = f() })
		if err != nil {
			b.Fatal(err)
		}
		cpu[i] += cpuTime() - before
		msgs[i] += r.messages
		wall[i] += r.elapsed
	}
	for n := 0; b.Loop(); n++ {
		ours := func() (round, error) { return drv.run(ctx, c.Target) }
		plain := func() (round, error) { return runGhz(ctx, c, c.Target) }
		if n%2 == 0 {
			measure(0, ours)
			measure(1, plain)
		} else {
			measure(1, plain)
			measure(0, ours)
		}
	}
	for i, name := range names {
		if msgs[i] == 0 {
			b.Fatalf("%s sent no messages", name)
		}
		b.ReportMetric(float64(cpu[i].Nanoseconds())/float64(msgs[i]), name+"-cpu-ns/msg")
		b.ReportMetric(float64(msgs[i])/wall[i].Seconds(), name+"-msgs/s")
	}
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
