package protocol_test

import (
	"net"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/bidikit/bidikit/harness/protocol"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// protoDir is this repository's proto/ folder, the import path of its .proto sources.
var protoDir = filepath.Join("..", "..", "proto")

// writeProtoset writes the FileDescriptorSet of fd and its imports to a
// file in a temporary folder, as `protoc --include_imports` would.
func writeProtoset(fd protoreflect.FileDescriptor) string {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		for i := 0; i < f.Imports().Len(); i++ {
			add(f.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(fd)
	data, err := proto.Marshal(set)
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "set.protoset")
	Expect(os.WriteFile(path, data, 0o644)).To(Succeed())
	return path
}

// expectChatConnect checks that d resolves the chat stream to the chat messages.
func expectChatConnect(d *protocol.Descriptors) {
	md, err := d.Method("bidikit.chat.v1.ChatService/Connect")
	Expect(err).NotTo(HaveOccurred())
	Expect(md.Input().FullName()).To(BeEquivalentTo("bidikit.chat.v1.ClientEvent"))
	Expect(md.Output().FullName()).To(BeEquivalentTo("bidikit.chat.v1.ServerEvent"))
	Expect(md.Output().Fields().ByName("batch").Message().FullName()).To(BeEquivalentTo("bidikit.chat.v1.MessageBatch"))
	Expect(protocol.FullMethod(md)).To(Equal("/bidikit.chat.v1.ChatService/Connect"))
}

var _ = Describe("Descriptors", func() {
	It("come from the reference server's reflection (v1)", func(ctx SpecContext) {
		conn, addr := startReference()
		d, err := protocol.Reflect(ctx, conn, addr)
		Expect(err).NotTo(HaveOccurred())
		Expect(d.Source).To(Equal("server reflection (grpc.reflection.v1) at " + addr))
		Expect(d.Services()).To(ContainElements("bidikit.chat.v1.ChatService", "bidikit.collab.v1.CollabService", "grpc.health.v1.Health"))
		expectChatConnect(d)
		_, err = d.Method("bidikit.collab.v1.CollabService/Edit")
		Expect(err).NotTo(HaveOccurred(), "every listed service is fetched when none is named")
	}, SpecTimeout(20e9))

	It("fall back to reflection v1alpha when the server has no v1", func(ctx SpecContext) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		s := grpc.NewServer()
		chatv1.RegisterChatServiceServer(s, chatv1.UnimplementedChatServiceServer{})
		reflectionv1alpha.RegisterServerReflectionServer(s, reflection.NewServer(reflection.ServerOptions{Services: s}))
		go func() { _ = s.Serve(lis) }()
		DeferCleanup(s.Stop)
		conn := dial(lis.Addr().String())

		d, err := protocol.Reflect(ctx, conn, lis.Addr().String(), "bidikit.chat.v1.ChatService")
		Expect(err).NotTo(HaveOccurred())
		Expect(d.Source).To(HavePrefix("server reflection (grpc.reflection.v1alpha)"))
		expectChatConnect(d)
	}, SpecTimeout(20e9))

	It("say plainly when a server has no reflection at all", func(ctx SpecContext) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		s := grpc.NewServer()
		chatv1.RegisterChatServiceServer(s, chatv1.UnimplementedChatServiceServer{})
		go func() { _ = s.Serve(lis) }()
		DeferCleanup(s.Stop)

		_, err = protocol.Reflect(ctx, dial(lis.Addr().String()), "the-target")
		Expect(err).To(MatchError(And(
			ContainSubstring("server reflection at the-target: the server implements neither grpc.reflection.v1 nor v1alpha"),
			ContainSubstring("give the descriptors as a protoset or .proto sources"))))
	}, SpecTimeout(20e9))

	It("come from a protoset file", func() {
		path := writeProtoset(chatv1.File_bidikit_chat_v1_chat_proto)
		d, err := protocol.LoadProtoset(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(d.Source).To(Equal("protoset " + path))
		Expect(d.Services()).To(Equal([]string{"bidikit.chat.v1.ChatService"}))
		expectChatConnect(d)
	})

	It("refuse a file that is not a protoset, naming it", func() {
		path := filepath.Join(GinkgoT().TempDir(), "junk.protoset")
		Expect(os.WriteFile(path, []byte("not a descriptor set"), 0o644)).To(Succeed())
		_, err := protocol.LoadProtoset(path)
		Expect(err).To(MatchError(ContainSubstring("protoset " + path + ": not a google.protobuf.FileDescriptorSet")))
	})

	It("come from .proto sources compiled at run time", func(ctx SpecContext) {
		d, err := protocol.CompileProtos(ctx, []string{protoDir}, []string{"bidikit/chat/v1/chat.proto"})
		Expect(err).NotTo(HaveOccurred())
		expectChatConnect(d)

		By("a path on disk inside the import path is taken as its import name")
		d, err = protocol.CompileProtos(ctx, []string{protoDir}, []string{filepath.Join(protoDir, "bidikit", "chat", "v1", "chat.proto")})
		Expect(err).NotTo(HaveOccurred())
		Expect(d.Source).To(Equal(".proto sources bidikit/chat/v1/chat.proto"))
	}, SpecTimeout(20e9))

	It("name the .proto file, line and column of a compile error", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "bad.proto"), []byte("syntax = \"proto3\";\npackage x;\nmessage M {\n  strin name = 1;\n}\n"), 0o644)).To(Succeed())
		_, err := protocol.CompileProtos(ctx, []string{dir}, []string{"bad.proto"})
		Expect(err).To(MatchError(ContainSubstring("bad.proto:4:3")))
	}, SpecTimeout(20e9))

	DescribeTable("resolve a method or say what was wrong",
		func(name string, want ...string) {
			d, err := protocol.FromFileDescriptorSet(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
				protodesc.ToFileDescriptorProto(chatv1.File_bidikit_chat_v1_chat_proto),
				protodesc.ToFileDescriptorProto(reflectionv1alpha.File_grpc_reflection_v1alpha_reflection_proto),
				protodesc.ToFileDescriptorProto(healthFile()),
			}}, "test set")
			Expect(err).NotTo(HaveOccurred())
			_, err = d.Method(name)
			for _, w := range want {
				Expect(err).To(MatchError(ContainSubstring(w)))
			}
		},
		Entry("unknown service: the services offered", "bidikit.chat.v1.ChatServise/Connect",
			`unknown service "bidikit.chat.v1.ChatServise" in test set; did you mean "bidikit.chat.v1.ChatService"?`,
			"services: bidikit.chat.v1.ChatService, grpc.health.v1.Health, grpc.reflection.v1alpha.ServerReflection"),
		Entry("unknown method: the service's methods and kinds", "bidikit.chat.v1.ChatService/Conect",
			`service bidikit.chat.v1.ChatService has no method "Conect"; did you mean "Connect"?; methods: Connect (bidi-streaming)`),
		Entry("unary: which kind it is", "grpc.health.v1.Health/Check",
			"is a unary method: rpc Check(grpc.health.v1.HealthCheckRequest) returns (grpc.health.v1.HealthCheckResponse)"),
		Entry("server streaming: which kind it is", "/grpc.health.v1.Health/Watch",
			"is a server-streaming method: rpc Watch(grpc.health.v1.HealthCheckRequest) returns (stream grpc.health.v1.HealthCheckResponse)"),
		Entry("not a method name", "Connect", `want package.Service/Method`),
	)

	It("accept the dotted spelling of a method", func() {
		d, err := protocol.LoadProtoset(writeProtoset(chatv1.File_bidikit_chat_v1_chat_proto))
		Expect(err).NotTo(HaveOccurred())
		md, err := d.Method("bidikit.chat.v1.ChatService.Connect")
		Expect(err).NotTo(HaveOccurred())
		Expect(protocol.MethodKind(md)).To(Equal("bidi-streaming"))
	})
})
