package protocol_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/examples/route_guide/routeguide"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/harness/protocol"
)

// grpc-go's route_guide example server, built from the
// module graph and started as a process: code nobody in this repository
// wrote. It has no server reflection.
var _ = Describe("grpc-go's route_guide server", Ordered, func() {
	var addr string

	BeforeAll(func(ctx SpecContext) {
		addr = startRouteGuide(ctx, buildExample(ctx, "google.golang.org/grpc/examples/route_guide/server"))
	}, NodeTimeout(3*time.Minute))

	It("has no reflection, and Reflect says so", func(ctx SpecContext) {
		_, err := protocol.Reflect(ctx, dial(addr), addr)
		Expect(err).To(MatchError(ContainSubstring("the server implements neither grpc.reflection.v1 nor v1alpha")))
	}, SpecTimeout(20*time.Second))

	It("has its edition-2023 .proto compiled at run time", func(ctx SpecContext) {
		dir, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "google.golang.org/grpc/examples").Output()
		Expect(err).NotTo(HaveOccurred())
		d, err := protocol.CompileProtos(ctx, []string{strings.TrimSpace(string(dir))}, []string{"route_guide/routeguide/route_guide.proto"})
		Expect(err).NotTo(HaveOccurred())
		md, err := d.Method("routeguide.RouteGuide/RouteChat")
		Expect(err).NotTo(HaveOccurred())
		Expect(md.Input().FullName()).To(BeEquivalentTo("routeguide.RouteNote"))
		_, err = d.Method("routeguide.RouteGuide/ListFeatures")
		Expect(err).To(MatchError(ContainSubstring("is a server-streaming method: rpc ListFeatures(routeguide.Rectangle) returns (stream routeguide.Feature)")))
	}, SpecTimeout(30*time.Second))

	It("chats through the route-chat mapping: a room is a latitude, a message a note", func(ctx SpecContext) {
		d, err := protocol.LoadProtoset(writeProtoset(routeguide.File_examples_route_guide_routeguide_route_guide_proto))
		Expect(err).NotTo(HaveOccurred())
		m := compileFile("route-chat.yaml", d)
		Expect(m.Missing(protocol.In(protocol.Delivery, protocol.FieldSeq), protocol.Out(protocol.OutJoin))).
			To(Equal([]protocol.Path{"incoming.delivery.seq", "outgoing.join"}))

		// A fresh room per run of the spec: the server keeps every note.
		room := m.RoomName(int(time.Now().UnixNano() % 1_000_000))
		conn := dial(addr)
		alice, bob := openMember(ctx, conn, m, "alice"), openMember(ctx, conn, m, "bob")

		alice.send(protocol.OutSend, protocol.Values{Room: room, Body: "first note"})
		got := alice.await(protocol.Delivery)
		Expect(got).To(HaveLen(1))
		Expect(got[0].Room).To(Equal(room))
		Expect(got[0].Body).To(Equal("first note"))
		Expect(got[0].Has(protocol.FieldSeq)).To(BeFalse())

		bob.send(protocol.OutSend, protocol.Values{Room: room, Body: `second "note"`})
		var bodies []string
		for len(bodies) < 2 {
			in := bob.await(protocol.Delivery)[0]
			Expect(in.Room).To(Equal(room))
			bodies = append(bodies, in.Body)
		}
		Expect(bodies).To(Equal([]string{"first note", `second "note"`}))
		alice.end()
		bob.end()
	}, SpecTimeout(30*time.Second))
})

// grpc-go's reflection example: helloworld's Greeter and the echo service
// behind server reflection (v1 and v1alpha), third-party code again. Its
// echo service implements only the unary call.
var _ = Describe("grpc-go's reflection example server", Ordered, func() {
	var addr string

	BeforeAll(func(ctx SpecContext) {
		bin := buildExample(ctx, "google.golang.org/grpc/examples/features/reflection/server")
		cmd := exec.Command(bin, "-port", "0")
		stdout, err := cmd.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		Expect(cmd.Start()).To(Succeed())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		DeferCleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		// It prints "server listening at [::]:PORT" once it listens.
		line, err := bufio.NewReader(stdout).ReadString('\n')
		Expect(err).NotTo(HaveOccurred(), "the reflection example printed no address")
		_, port, err := net.SplitHostPort(strings.TrimSpace(strings.TrimPrefix(line, "server listening at ")))
		Expect(err).NotTo(HaveOccurred(), "unexpected first line %q", line)
		addr = net.JoinHostPort("127.0.0.1", port)
	}, NodeTimeout(3*time.Minute))

	It("describes its services through reflection", func(ctx SpecContext) {
		d, err := protocol.Reflect(ctx, dial(addr), addr)
		Expect(err).NotTo(HaveOccurred())
		Expect(d.Services()).To(ContainElements("grpc.examples.echo.Echo", "helloworld.Greeter"))
		md, err := d.Method("grpc.examples.echo.Echo/BidirectionalStreamingEcho")
		Expect(err).NotTo(HaveOccurred())
		Expect(md.Input().FullName()).To(BeEquivalentTo("grpc.examples.echo.EchoRequest"))
		_, err = d.Method("helloworld.Greeter/SayHello")
		Expect(err).To(MatchError(ContainSubstring("is a unary method: rpc SayHello(helloworld.HelloRequest) returns (helloworld.HelloReply)")))

		By("a stream of a method the server does not implement ends with UNIMPLEMENTED")
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := protocol.OpenStream(sctx, dial(addr), md)
		Expect(err).NotTo(HaveOccurred())
		_, err = st.Recv()
		Expect(status.Code(err)).To(Equal(codes.Unimplemented), "got %v", err)
	}, SpecTimeout(20*time.Second))
})

// buildExample builds one of grpc-go's example servers (a main package of a
// module in go.mod) into a temporary folder.
func buildExample(ctx context.Context, pkg string) string {
	bin := filepath.Join(GinkgoT().TempDir(), filepath.Base(filepath.Dir(pkg))+"_server")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build %s: %s", pkg, out)
	return bin
}

// startRouteGuide starts bin on a free loopback port and waits until it
// accepts connections (a port taken in between is retried, three times).
func startRouteGuide(ctx context.Context, bin string) string {
	for attempt := 0; attempt < 3; attempt++ {
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
	poll:
		for range 200 {
			select {
			case <-exited:
				GinkgoWriter.Printf("route_guide server on port %d exited: %s\n", port, stderr.String())
				break poll
			case <-ctx.Done():
				Fail("the route_guide server did not accept connections before the deadline")
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				_ = c.Close()
				return addr
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	Fail("the route_guide server did not start on a free port in three attempts")
	return ""
}
