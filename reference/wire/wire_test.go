package wire_test

import (
	"io"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/wire"
)

// rawCodec lets the test client send arbitrary bytes as a message.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

var _ = Describe("Recv", func() {
	It("decodes good messages and answers undecodable ones with INVALID_ARGUMENT", func(ctx SpecContext) {
		got := make(chan string, 4)
		srv := grpc.NewServer()
		srv.RegisterService(&grpc.ServiceDesc{ServiceName: "t.T", HandlerType: (*any)(nil),
			Streams: []grpc.StreamDesc{{StreamName: "S", ClientStreams: true, ServerStreams: true,
				Handler: func(_ any, ss grpc.ServerStream) error {
					var f wire.Frame
					for {
						ev := &chatv1.ClientEvent{}
						if err := wire.Recv(ss, &f, ev); err != nil {
							if err == io.EOF {
								return nil
							}
							return err
						}
						got <- ev.GetJoin().GetRoom()
					}
				}}}}, struct{}{})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		go func() { _ = srv.Serve(lis) }()
		DeferCleanup(srv.Stop)
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cc.Close)

		st, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/t.T/S", grpc.ForceCodec(rawCodec{}))
		Expect(err).NotTo(HaveOccurred())
		good, _ := proto.Marshal(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: "lobby"}}})
		Expect(st.SendMsg(good)).To(Succeed())
		Eventually(got).Should(Receive(Equal("lobby")))
		Expect(st.SendMsg([]byte{0x0a, 0xff})).To(Succeed())
		var out []byte
		err = st.RecvMsg(&out)
		Expect(status.Code(err)).To(Equal(codes.InvalidArgument))
		Expect(status.Convert(err).Message()).To(ContainSubstring("malformed message (2 bytes)"))
	}, SpecTimeout(10*time.Second))
})
