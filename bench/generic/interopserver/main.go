// Command interopserver serves grpc-go's interop TestService
// (google.golang.org/grpc/interop: FullDuplexCall and the rest, code
// nobody in this repository wrote) with server reflection and channelz, so
// that `bidikit bench --call` and ghz can find the method without a
// protoset and the leak check can read channelz. With -protoset FILE it
// writes the service's descriptors instead (for grpc-go's own
// google.golang.org/grpc/interop/server, which has no reflection) and
// exits.
//
//	go run ./bench/generic/interopserver -addr 127.0.0.1:50051
//	go run ./bench/generic/interopserver -protoset /tmp/interop.protoset
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	channelzsvc "google.golang.org/grpc/channelz/service"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "address to serve on")
	protoset := flag.String("protoset", "", "write the TestService's FileDescriptorSet to this file and exit")
	flag.Parse()
	if *protoset != "" {
		if err := writeProtoset(*protoset); err != nil {
			fmt.Fprintln(os.Stderr, "interopserver:", err)
			os.Exit(1)
		}
		return
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "interopserver:", err)
		os.Exit(1)
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
	reflection.Register(s)
	channelzsvc.RegisterChannelzServiceToServer(s)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; s.Stop() }()
	fmt.Fprintln(os.Stderr, "interopserver: serving grpc.testing.TestService on", lis.Addr())
	if err := s.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "interopserver:", err)
		os.Exit(1)
	}
}

// writeProtoset writes test.proto's descriptor and its imports.
func writeProtoset(path string) error {
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
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
