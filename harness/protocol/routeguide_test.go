package protocol_test

import (
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
	"google.golang.org/grpc/examples/route_guide/routeguide"

	"github.com/bidikit/bidikit/harness/protocol"
)

// grpc-go's route_guide example server, built from the
// module graph and started as a process: code nobody in this repository
// wrote. It has no server reflection.
var _ = Describe("grpc-go's route_guide server", Ordered, func() {
	var addr string

	BeforeAll(func(ctx SpecContext) {
		bin := filepath.Join(GinkgoT().TempDir(), "route_guide_server")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "google.golang.org/grpc/examples/route_guide/server").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "go build of the route_guide server: %s", out)
		addr = startRouteGuide(ctx, bin)
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
