package generic_test

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc"
	channelzsvc "google.golang.org/grpc/channelz/service"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/bidikit/bidikit/bench/generic"
)

// startInterop serves grpc-go's interop TestService, with reflection and
// channelz, on a free loopback port.
func startInterop() string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
	reflection.Register(s)
	channelzsvc.RegisterChannelzServiceToServer(s)
	go func() { _ = s.Serve(lis) }()
	DeferCleanup(s.Stop)
	return lis.Addr().String()
}

// writeProtoset writes a FileDescriptorSet of the interop test service.
func writeProtoset() string {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := 0; i < fd.Imports().Len(); i++ {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(testgrpc.File_grpc_testing_test_proto)
	b, err := proto.Marshal(set)
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "test.protoset")
	Expect(os.WriteFile(path, b, 0o600)).To(Succeed())
	return path
}

// echo64 asks FullDuplexCall for one 64-byte response per 64-byte request.
var echo64 = fmt.Sprintf(`{"response_parameters":[{"size":64}],"payload":{"body":%q}}`,
	base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 64))))

var _ = Describe("the ghz-driven generic driver on interop FullDuplexCall", func() {
	var addr string
	BeforeEach(func() {
		base := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(base))
		})
		addr = startInterop()
	})
	cfg := func() generic.Config {
		return generic.Config{Call: "grpc.testing.TestService/FullDuplexCall", Target: addr, Insecure: true,
			Data: echo64, Concurrency: 4, Connections: 1, StreamCallCount: 50, Duration: time.Second, LeakSettle: 5 * time.Second}
	}

	It("records per-message latency through reflection and gives a leak verdict", func(ctx SpecContext) {
		res, err := generic.Run(ctx, cfg())
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Messages).To(BeNumerically(">", 0))
		Expect(res.LatencyMS.Count).To(BeNumerically(">", 0))
		// Every call sent all its messages (rounds wait for calls in
		// flight) and the echo answers each: one sample per message.
		Expect(res.Errors).To(BeEmpty())
		Expect(res.LatencyMS.Count).To(Equal(res.Messages))
		Expect(res.Messages % 50).To(BeZero())
		Expect(res.LatencyOf).To(ContainSubstring("per-message"))
		Expect(res.Notes).To(ContainElement(ContainSubstring("no leak")))
	}, SpecTimeout(60*time.Second))

	It("runs plain ghz beside it with --vs ghz and gives the ratio", func(ctx SpecContext) {
		c := cfg()
		c.Vs, c.Rounds, c.Protoset = "ghz", 1, writeProtoset()
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Vs).NotTo(BeNil())
		Expect(res.Vs.Tool).To(Equal("ghz"))
		Expect(res.Vs.MessagesPerSec).To(BeNumerically(">", 0))
		Expect(res.Vs.Ratio).To(BeNumerically("~", res.MessagesPerSec/res.Vs.MessagesPerSec, 1e-9))
		Expect(res.Rounds).To(HaveLen(1))
	}, SpecTimeout(60*time.Second))

	It("puts connection faults between driver and target", func(ctx SpecContext) {
		c := cfg()
		c.Concurrency, c.StreamCallCount = 1, 5
		c.Faults = []string{"latency=10ms"}
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.LatencyMS.Count).To(BeNumerically(">", 0))
		// 10 ms each way through the proxy.
		Expect(res.LatencyMS.P50).To(BeNumerically(">=", 20))
	}, SpecTimeout(60*time.Second))

	It("names a method the target does not have", func(ctx SpecContext) {
		c := cfg()
		c.Call = "grpc.testing.TestService/NoSuchCall"
		_, err := generic.Run(ctx, c)
		Expect(err).To(MatchError(ContainSubstring("NoSuchCall")))
	}, SpecTimeout(30*time.Second))
})
