package protocol_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/format"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bidikit/bidikit/reference"
)

func TestProtocol(t *testing.T) {
	RegisterFailHandler(Fail)
	format.MaxLength = 0 // error messages are compared whole
	RunSpecs(t, "protocol")
}

// startReference starts the in-process reference server (development auth:
// any bearer token is the user) and a client connection to it; both end at
// the spec's cleanup, and the spec then checks that no goroutine leaked.
func startReference() (*grpc.ClientConn, string) {
	baseline := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
	})
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := reference.StartDefault(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		cancel()
		Expect(srv.Wait()).To(Succeed())
	})
	conn := dial(srv.Addr())
	return conn, srv.Addr()
}

// dial connects to addr on loopback without TLS; the connection closes at
// the spec's cleanup.
func dial(addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return conn
}
