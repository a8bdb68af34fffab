package generic_test

import (
	"io"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"

	"github.com/bidikit/bidikit/bench/generic"
)

// silentServer reads FullDuplexCall's messages, never answers, and ends
// the stream only when the client cancels it.
type silentServer struct {
	testgrpc.UnimplementedTestServiceServer
}

func (silentServer) FullDuplexCall(st testgrpc.TestService_FullDuplexCallServer) error {
	for {
		if _, err := st.Recv(); err == io.EOF {
			<-st.Context().Done() // half-closed: still no answer
			return st.Context().Err()
		} else if err != nil {
			return err
		}
	}
}

var _ = Describe("the generic driver on a server that never answers", func() {
	var addr string
	BeforeEach(func() {
		base := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(base))
		})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		s := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(s, silentServer{})
		reflection.Register(s)
		go func() { _ = s.Serve(lis) }()
		DeferCleanup(s.Stop)
		addr = lis.Addr().String()
	})
	cfg := func() generic.Config {
		return generic.Config{Call: "grpc.testing.TestService/FullDuplexCall", Target: addr, Insecure: true,
			Data: echo64, Concurrency: 2, Duration: 300 * time.Millisecond, DrainTimeout: 300 * time.Millisecond}
	}

	It("cancels the calls still open at the drain timeout and says so", func(ctx SpecContext) {
		c := cfg()
		c.Window = 1 // the window never reopens: each stream sends one message
		res, err := generic.Run(ctx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Messages).To(Equal(int64(2)))
		Expect(res.Errors).To(HaveKeyWithValue("cancelled: still open at the drain timeout", int64(2)))
		Expect(res.Notes).To(ContainElement(ContainSubstring("the method answered 0 of 2 messages")))
	}, SpecTimeout(60*time.Second))
})
