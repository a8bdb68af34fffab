package custom_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	channelzsvc "google.golang.org/grpc/channelz/service"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
)

// The scenarios of scenarios/custom against the servers they are written
// for: code nobody in this repository wrote.
var customDir = filepath.Join("..", "..", "..", "scenarios", "custom")

// loadCustom parses scenarios/custom/name, with extra appended to its text
// (more checks, say), from its own folder (its relative paths resolve).
func loadCustom(name, extra string) *scenario.Scenario {
	path := filepath.Join(customDir, name)
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred(), "scenario %s", path)
	data = append(data, extra...)
	s, err := scenario.Parse(path, data)
	Expect(err).NotTo(HaveOccurred(), "scenario %s", path)
	return s
}

// verdictOf is res's verdict of the check named name (a failure when the
// run has none).
func verdictOf(vs []check.Verdict, name string) check.Verdict {
	for _, v := range vs {
		if v.Name == name {
			return v
		}
	}
	Fail(fmt.Sprintf("no verdict for %s", name))
	return check.Verdict{}
}

// expectPassed asserts that res ran and that every check passed, except
// the latency thresholds (a figure of this machine's load, not of the
// server: the test only requires that they measured something).
func expectPassed(res result.Scenario) {
	GinkgoHelper()
	Expect(res.Failure).To(BeEmpty())
	for _, v := range res.Checks {
		if strings.HasPrefix(v.Name, "threshold ") && strings.Contains(v.Name, " p99 ") {
			Expect(v.Status).NotTo(Equal(check.NotMeasurable), "%s: %s", v.Name, v.Summary)
			continue
		}
		Expect(v.Status).To(Equal(check.Pass), "%s: %s\n%s", v.Name, v.Summary, describe(res))
	}
}

// buildServer builds a main package from the module graph into a temporary
// folder.
func buildServer(ctx context.Context, pkg string) string {
	bin := filepath.Join(GinkgoT().TempDir(), "server")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build %s: %s", pkg, out)
	return bin
}

// startProcess runs bin -port PORT on a free loopback port and waits until
// it accepts connections (a port taken in between is retried, three
// times); the process is killed at the spec's cleanup.
func startProcess(ctx context.Context, bin string) string {
	for range 3 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		port := lis.Addr().(*net.TCPAddr).Port
		Expect(lis.Close()).To(Succeed())
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "-port", fmt.Sprint(port))
		cmd.Stderr = &stderr
		Expect(cmd.Start()).To(Succeed())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		DeferCleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		addr := fmt.Sprintf("localhost:%d", port)
		for range 200 {
			select {
			case <-exited:
				GinkgoWriter.Printf("%s on port %d exited: %s\n", bin, port, stderr.String())
			case <-ctx.Done():
				Fail("the server did not accept connections before the deadline")
			default:
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					_ = c.Close()
					return addr
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			break
		}
	}
	Fail("the server did not start in three attempts")
	return ""
}

// startInterop serves grpc-go's interop TestService in-process with gRPC
// health, channelz, server reflection and an admin HTTP endpoint with /debug/pprof/ (the leaks
// check's source); everything stops at the spec's cleanup.
func startInterop() (addr, admin string) {
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, interop.NewTestServer())
	healthpb.RegisterHealthServer(gs, health.NewServer())
	channelzsvc.RegisterChannelzServiceToServer(gs)
	reflection.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	go func() { _ = gs.Serve(lis) }()
	DeferCleanup(gs.Stop)

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	go func() { _ = hs.Serve(hl) }()
	DeferCleanup(hs.Close)
	return lis.Addr().String(), "http://" + hl.Addr().String()
}

var _ = Describe("third-party servers through scenarios/custom", func() {
	It("route-chat.yaml: grpc-go's route_guide server answers every note, and what it cannot tell is not measurable", func(ctx SpecContext) {
		s := loadCustom("route-chat.yaml", "")
		addr := startProcess(ctx, buildServer(ctx, "google.golang.org/grpc/examples/route_guide/server"))
		res, c := run(ctx, s, addr, "")
		expectPassed(res)
		// Every note came back to its sender, timed from its send.
		Expect(c.String()).To(ContainSubstring("send="))
		Expect(res.Messages.Sent).To(BeNumerically(">", 50))
		Expect(res.Messages.Delivered).To(BeNumerically(">=", res.Messages.Sent))
		Expect(res.LatencyMS.Count).To(BeNumerically("==", res.Messages.Sent), describe(res))

		// RouteChat has no seq: the ordering checks say so, naming the field.
		more := loadCustom("route-chat.yaml", "  - total-order\n  - no-gaps\n  - leaks\n")
		for _, cs := range more.Checks {
			ck, err := cs.New()
			Expect(err).NotTo(HaveOccurred())
			v := ck.Verdict(ctx, nil)
			switch cs.Name {
			case "total-order":
				Expect(v.Status).To(Equal(check.NotMeasurable))
				Expect(v.Summary).To(Equal("protocol.incoming.delivery.seq, protocol.incoming.delivery.sender are not mapped"))
			case "no-gaps":
				Expect(v.Status).To(Equal(check.NotMeasurable))
				Expect(v.Summary).To(Equal("protocol.incoming.delivery.seq, protocol.incoming.joined.head_seq are not mapped"))
			}
		}
	}, SpecTimeout(3*time.Minute))

	It("full-duplex.yaml: grpc-go's interop FullDuplexCall keeps each stream's order through cut streams, and leaks nothing", func(ctx SpecContext) {
		s := loadCustom("full-duplex.yaml", "  - leaks: {settle: 5s}\n")
		addr, admin := startInterop()
		res, c := run(ctx, s, addr, admin)
		expectPassed(res)
		Expect(c[event.Fault]).To(BeNumerically(">", 0), "the abrupt-close fault fired: %s", c)
		Expect(res.Messages.Delivered).To(BeNumerically(">", 500))
		Expect(verdictOf(res.Checks, "delivery-order").Summary).To(ContainSubstring("arrived in ascending seq order"))
		Expect(res.LatencyMS.Count).To(BeNumerically(">", 500), describe(res))
	}, SpecTimeout(2*time.Minute))

	It("full-duplex.yaml's protoset is grpc-go's grpc/testing/test.proto as linked (UPDATE_PROTOSET=1 rewrites it)", func() {
		dir := GinkgoT().TempDir()
		protosetFile(dir, "set", testgrpc.File_grpc_testing_test_proto)
		want, err := os.ReadFile(filepath.Join(dir, "set"))
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(customDir, "grpc-testing.protoset")
		if os.Getenv("UPDATE_PROTOSET") == "1" {
			Expect(os.WriteFile(path, want, 0o644)).To(Succeed())
		}
		got, err := os.ReadFile(path)
		Expect(err).NotTo(HaveOccurred(), "the protoset %s (UPDATE_PROTOSET=1 go test ./harness/engine/custom/ writes it)", path)
		Expect(proto.Equal(unmarshalSet(got), unmarshalSet(want))).To(BeTrue(),
			"%s is not grpc-go's linked grpc/testing/test.proto: UPDATE_PROTOSET=1 go test ./harness/engine/custom/ rewrites it", path)
	})
})

// unmarshalSet reads a FileDescriptorSet.
func unmarshalSet(data []byte) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	Expect(proto.Unmarshal(data, set)).To(Succeed())
	return set
}
