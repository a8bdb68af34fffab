package protocol

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// The two server reflection methods. v1alpha's messages are wire-identical
// to v1's, so one client speaks both by choosing the path.
const (
	reflectionV1      = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	reflectionV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

var reflectionDesc = &grpc.StreamDesc{StreamName: "ServerReflectionInfo", ServerStreams: true, ClientStreams: true}

// Reflect loads descriptors from the server behind conn through gRPC server
// reflection: grpc.reflection.v1, or v1alpha when the server does not
// implement v1. It lists the server's services and fetches the files
// defining the named ones (every listed service when none is named) with
// their imports; a named service the server does not list is left for
// Descriptors.Method to report with the list. target names the server in
// messages. One reflection stream is used and ended before Reflect returns.
func Reflect(ctx context.Context, conn grpc.ClientConnInterface, target string, services ...string) (*Descriptors, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the reflection stream on every path
	var (
		r      *reflector
		listed []string
		err    error
	)
	for _, path := range []string{reflectionV1, reflectionV1Alpha} {
		r, err = openReflector(ctx, conn, path)
		if err == nil {
			listed, err = r.listServices()
		}
		if status.Code(err) != codes.Unimplemented {
			break
		}
	}
	if status.Code(err) == codes.Unimplemented {
		return nil, fmt.Errorf("server reflection at %s: the server implements neither grpc.reflection.v1 nor v1alpha (%v); give the descriptors as a protoset or .proto sources instead", target, status.Convert(err).Message())
	}
	if err != nil {
		return nil, fmt.Errorf("server reflection at %s: %w", target, err)
	}
	source := fmt.Sprintf("server reflection (%s) at %s", r.version(), target)
	want := services
	if len(want) == 0 {
		want = listed
	}
	isListed := make(map[string]bool, len(listed))
	for _, s := range listed {
		isListed[s] = true
	}
	var fdps []*descriptorpb.FileDescriptorProto
	for _, svc := range want {
		if !isListed[svc] {
			continue
		}
		got, err := r.fileContainingSymbol(svc)
		if err != nil {
			return nil, fmt.Errorf("%s: service %s: %w", source, svc, err)
		}
		fdps = append(fdps, got...)
	}
	files, err := buildFiles(fdps, func(path string) (*descriptorpb.FileDescriptorProto, error) {
		got, err := r.fileByFilename(path)
		if err != nil {
			return nil, err
		}
		for _, f := range got {
			if f.GetName() == path {
				return f, nil
			}
		}
		return nil, fmt.Errorf("server sent no file %s", path)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	sort.Strings(listed)
	return newDescriptors(files, source, listed), nil
}

// reflector is one open reflection stream; its methods send one request and
// read its one response.
type reflector struct {
	path   string
	stream grpc.ClientStream
}

func openReflector(ctx context.Context, conn grpc.ClientConnInterface, path string) (*reflector, error) {
	st, err := conn.NewStream(ctx, reflectionDesc, path)
	if err != nil {
		return nil, err
	}
	return &reflector{path: path, stream: st}, nil
}

func (r *reflector) version() string {
	if r.path == reflectionV1Alpha {
		return "grpc.reflection.v1alpha"
	}
	return "grpc.reflection.v1"
}

func (r *reflector) ask(req *reflectionpb.ServerReflectionRequest) (*reflectionpb.ServerReflectionResponse, error) {
	if err := r.stream.SendMsg(req); err != nil {
		// The server's status comes with the next read.
		resp := new(reflectionpb.ServerReflectionResponse)
		if rerr := r.stream.RecvMsg(resp); rerr != nil {
			return nil, rerr
		}
		return nil, err
	}
	resp := new(reflectionpb.ServerReflectionResponse)
	if err := r.stream.RecvMsg(resp); err != nil {
		return nil, err
	}
	if e := resp.GetErrorResponse(); e != nil {
		return nil, fmt.Errorf("%s: %s", codes.Code(e.GetErrorCode()), e.GetErrorMessage())
	}
	return resp, nil
}

func (r *reflector) listServices() ([]string, error) {
	resp, err := r.ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		out = append(out, s.GetName())
	}
	return out, nil
}

func (r *reflector) fileContainingSymbol(symbol string) ([]*descriptorpb.FileDescriptorProto, error) {
	resp, err := r.ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}})
	if err != nil {
		return nil, err
	}
	return decodeFiles(resp)
}

func (r *reflector) fileByFilename(name string) ([]*descriptorpb.FileDescriptorProto, error) {
	resp, err := r.ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileByFilename{FileByFilename: name}})
	if err != nil {
		return nil, err
	}
	return decodeFiles(resp)
}

func decodeFiles(resp *reflectionpb.ServerReflectionResponse) ([]*descriptorpb.FileDescriptorProto, error) {
	fr := resp.GetFileDescriptorResponse()
	if fr == nil {
		return nil, errors.New("the server answered without file descriptors")
	}
	out := make([]*descriptorpb.FileDescriptorProto, 0, len(fr.GetFileDescriptorProto()))
	for _, raw := range fr.GetFileDescriptorProto() {
		f := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(raw, f); err != nil {
			return nil, fmt.Errorf("undecodable file descriptor: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}
