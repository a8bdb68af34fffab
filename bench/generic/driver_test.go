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

var _ = Describe("the generic driver on interop FullDuplexCall", func() {
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
			Data: echo64, Concurrency: 4, Connections: 1, StreamCallCount: 50, Duration: 500 * time.Millisecond, LeakSettle: 5 * time.Second}
	}

	It("saturates, labelled as such, with one latency sample per message and a leak verdict", func(ctx SpecContext) {
		res, err := generic.Run(ctx, cfg())
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Tool).To(Equal("bidikit-saturating"))
		Expect(res.Params).To(HaveKeyWithValue("mode", "saturating"))
		Expect(res.LatencyOf).To(HavePrefix("SATURATING"))
		Expect(res.Notes).To(ContainElement(ContainSubstring("saturating mode: a throughput figure")))
		Expect(res.Messages).To(BeNumerically(">", 0))
		// Every call sent all its messages (rounds wait for calls in
		// flight) and the echo answers each: one sample per message.
		Expect(res.Errors).To(BeEmpty())
		Expect(res.Messages % 50).To(BeZero())
		Expect(res.LatencyMS.Count).To(Equal(res.Messages))
		Expect(res.Extra["responses"]).To(BeNumerically("==", res.Messages))
		Expect(res.Extra["calls"]).To(BeNumerically("==", res.Messages/50))
		Expect(res.Notes).To(ContainElement(ContainSubstring("no leak")))
	}, SpecTimeout(60*time.Second))

	It("paces each stream open-loop and measures from the schedule", func(ctx SpecContext) {
		c := cfg()
		c.StreamCallCount, c.Rate, c.Duration = 0, 200, time.Second
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Tool).To(Equal("bidikit-paced"))
		Expect(res.Params).To(HaveKeyWithValue("rate_per_stream", "200"))
		Expect(res.LatencyOf).To(ContainSubstring("scheduled send time"))
		Expect(res.LatencyOf).To(ContainSubstring("coordinated omission"))
		Expect(res.Errors).To(BeEmpty())
		// 4 streams at 200/s for 1 s: the schedule holds 200 per stream
		// (phases start within the first interval, and nothing is
		// scheduled at or after 1 s).
		Expect(res.Messages).To(BeNumerically(">", 0))
		Expect(res.Messages).To(BeNumerically("<=", 4*200))
		Expect(res.LatencyMS.Count).To(Equal(res.Messages))
		Expect(res.Extra).To(HaveKeyWithValue("offered_messages_per_sec", 800.0))
		Expect(res.Extra).To(HaveKey("from_send_p99_ms"))
		Expect(res.Extra).To(HaveKey("sent_behind_schedule"))
	}, SpecTimeout(60*time.Second))

	It("counts a server stall in every paced message it held back (coordinated omission)", func(ctx SpecContext) {
		// Through a 100 ms one-way latency proxy with 1 stream at 100/s:
		// every response comes >= 200 ms after its scheduled time.
		c := cfg()
		c.Concurrency, c.StreamCallCount, c.Rate, c.Duration = 1, 0, 100, 500*time.Millisecond
		c.Faults = []string{"latency=100ms"}
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.LatencyMS.Count).To(BeNumerically(">", 0))
		Expect(res.LatencyMS.P50).To(BeNumerically(">=", 200))
	}, SpecTimeout(60*time.Second))

	It("keeps at most W messages in flight per stream in windowed mode", func(ctx SpecContext) {
		c := cfg()
		c.Window, c.StreamCallCount = 2, 0
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Tool).To(Equal("bidikit-windowed"))
		Expect(res.Params).To(HaveKeyWithValue("window", "2"))
		Expect(res.LatencyOf).To(ContainSubstring("at most 2 in flight"))
		Expect(res.Errors).To(BeEmpty())
		Expect(res.Messages).To(BeNumerically(">", 0))
		Expect(res.LatencyMS.Count).To(Equal(res.Messages))
	}, SpecTimeout(60*time.Second))

	It("holds windowed streams to the window: a 50 ms hop each way caps 1 stream with W=1 at 10 msgs/s", func(ctx SpecContext) {
		c := cfg()
		c.Concurrency, c.Window, c.StreamCallCount, c.Duration = 1, 1, 0, time.Second
		c.Faults = []string{"latency=50ms"}
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		// Each round trip takes >= 100 ms and one is in flight at a time,
		// so the k-th message goes out >= (k-1) x 100 ms into the round.
		Expect(res.Messages).To(BeNumerically(">=", 1))
		Expect(float64(res.Messages)).To(BeNumerically("<=", res.DurationS/0.1+1))
	}, SpecTimeout(60*time.Second))

	It("makes exactly -n calls of --stream-call-count messages", func(ctx SpecContext) {
		c := cfg()
		c.Duration, c.Total, c.StreamCallCount = 0, 10, 7
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Messages).To(Equal(int64(70)))
		Expect(res.Extra["calls"]).To(BeNumerically("==", 10))
		Expect(res.LatencyMS.Count).To(Equal(int64(70)))
		Expect(res.Params).To(HaveKeyWithValue("total_messages", "70"))
	}, SpecTimeout(60*time.Second))

	It("pauses after each send with ghz's --stream-interval, labelled as its own mode", func(ctx SpecContext) {
		c := cfg()
		c.Duration, c.Total, c.StreamCallCount, c.StreamInterval = 0, 2, 3, 5*time.Millisecond
		c.StreamDynamicMessages, c.Data = true, `{"response_parameters":[{"size":{{ .RequestNumber | add 1 }}}]}`
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Tool).To(Equal("bidikit-interval"))
		Expect(res.Params).To(HaveKeyWithValue("stream_interval", "5ms"))
		Expect(res.Errors).To(BeEmpty())
		Expect(res.Messages).To(Equal(int64(6)))
		Expect(res.Extra["responses"]).To(BeNumerically("==", 6))
	}, SpecTimeout(60*time.Second))

	It("cycles through a data array, reads -D and runs ghz templates per call", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		file := filepath.Join(dir, "data.json")
		Expect(os.WriteFile(file, []byte(`[`+echo64+`, {"response_parameters":[{"size":{{ add 1 .RequestNumber }}}]}]`), 0o600)).To(Succeed())
		c := cfg()
		c.Data, c.DataFile, c.Duration, c.Total, c.StreamCallCount = "", file, 0, 4, 3
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Errors).To(BeEmpty())
		Expect(res.Messages).To(Equal(int64(12)))
		Expect(res.Extra["responses"]).To(BeNumerically("==", 12))
	}, SpecTimeout(60*time.Second))

	It("runs plain ghz beside it with --vs ghz and gives a ratio that is not 0", func(ctx SpecContext) {
		c := cfg()
		c.Vs, c.Rounds, c.Protoset = "ghz", 2, writeProtoset()
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Vs).NotTo(BeNil())
		Expect(res.Vs.Tool).To(Equal("ghz"))
		Expect(res.Vs.Messages % 50).To(BeZero())
		Expect(res.Vs.MessagesPerSec).To(BeNumerically(">", 0))
		Expect(res.Vs.Ratio).To(BeNumerically(">", 0))
		Expect(res.Vs.Ratio).To(BeNumerically("~", res.MessagesPerSec/res.Vs.MessagesPerSec, 1e-9))
		Expect(res.Rounds).To(HaveLen(2))
		for _, r := range res.Rounds {
			Expect(r.Ours).To(BeNumerically(">", 0))
			Expect(r.Theirs).To(BeNumerically(">", 0))
		}
	}, SpecTimeout(90*time.Second))

	It("runs -n rounds against ghz's -n: the same calls and messages", func(ctx SpecContext) {
		c := cfg()
		c.Vs, c.Duration, c.Total, c.StreamCallCount = "ghz", 0, 8, 5
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Messages).To(Equal(int64(40)))
		Expect(res.Vs.Messages).To(Equal(int64(40)))
	}, SpecTimeout(60*time.Second))

	It("names a method the target does not have", func(ctx SpecContext) {
		c := cfg()
		c.Call = "grpc.testing.TestService/NoSuchCall"
		_, err := generic.Run(ctx, c)
		Expect(err).To(MatchError(ContainSubstring("NoSuchCall")))
		Expect(err).To(MatchError(ContainSubstring("FullDuplexCall")))
	}, SpecTimeout(30*time.Second))

	It("refuses data that does not fit the method's input, naming the type", func(ctx SpecContext) {
		c := cfg()
		c.Data = `{"no_such_field": 1}`
		_, err := generic.Run(ctx, c)
		Expect(err).To(MatchError(ContainSubstring("--data does not fit grpc.testing.StreamingOutputCallRequest")))
	}, SpecTimeout(30*time.Second))
})
