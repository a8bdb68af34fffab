package protocol

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Raw is a message sent as it is, bytes on the wire with no encoding: the
// malformed and oversized behaviours send these.
type Raw []byte

// codec is the stream's codec: protobuf for proto.Message (dynamicpb
// included), bytes as they are for Raw. Its name is "proto", so the
// content type stays application/grpc+proto.
type codec struct{ proto encoding.CodecV2 }

var streamCodec = codec{proto: encoding.GetCodecV2(protocodec.Name)}

func (c codec) Name() string { return protocodec.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(Raw); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*Raw); ok {
		*r = data.Materialize()
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

// Stream is one call of a bidi-streaming method carrying dynamic messages.
// As with grpc.ClientStream, one goroutine may Send while another Recvs;
// the caller owns ending it (CloseSend then Recv until io.EOF, or cancel
// the context it was opened with).
type Stream struct {
	cs  grpc.ClientStream
	out protoreflect.MessageType
}

// OpenStream opens md (which must be bidi streaming) on conn with the
// stream codec.
func OpenStream(ctx context.Context, conn grpc.ClientConnInterface, md protoreflect.MethodDescriptor, opts ...grpc.CallOption) (*Stream, error) {
	if !md.IsStreamingClient() || !md.IsStreamingServer() {
		return nil, fmt.Errorf("%s is %s, not bidi streaming", FullMethod(md), MethodKind(md))
	}
	desc := &grpc.StreamDesc{StreamName: string(md.Name()), ServerStreams: true, ClientStreams: true}
	opts = append([]grpc.CallOption{grpc.ForceCodecV2(streamCodec)}, opts...)
	cs, err := conn.NewStream(ctx, desc, FullMethod(md), opts...)
	if err != nil {
		return nil, err
	}
	return &Stream{cs: cs, out: dynamicpb.NewMessageType(md.Output())}, nil
}

// Open opens the mapping's method with its metadata rendered from v.
func (m *Mapping) Open(ctx context.Context, conn grpc.ClientConnInterface, v Values, opts ...grpc.CallOption) (*Stream, error) {
	if md := m.Metadata(v); md != nil {
		ctx = metadata.NewOutgoingContext(ctx, metadata.Join(mdFrom(ctx), md))
	}
	return OpenStream(ctx, conn, m.method, opts...)
}

func mdFrom(ctx context.Context) metadata.MD {
	md, _ := metadata.FromOutgoingContext(ctx)
	return md
}

// Send sends one message: a proto.Message of the method's input type (as
// Encode builds), or Raw bytes.
func (s *Stream) Send(msg any) error {
	switch msg.(type) {
	case proto.Message, Raw:
		return s.cs.SendMsg(msg)
	}
	return fmt.Errorf("stream send: %T is neither a proto.Message nor Raw", msg)
}

// Recv reads the next server message into a new dynamic message.
func (s *Stream) Recv() (*dynamicpb.Message, error) {
	msg := s.out.New().Interface().(*dynamicpb.Message)
	if err := s.cs.RecvMsg(msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// RecvRaw reads the next server message's bytes without decoding them.
func (s *Stream) RecvRaw() (Raw, error) {
	var r Raw
	err := s.cs.RecvMsg(&r)
	return r, err
}

// CloseSend half-closes the stream; keep reading until io.EOF.
func (s *Stream) CloseSend() error { return s.cs.CloseSend() }

// Header waits for the server's header metadata.
func (s *Stream) Header() (metadata.MD, error) { return s.cs.Header() }

// Trailer is the server's trailer metadata, once Recv has returned an error.
func (s *Stream) Trailer() metadata.MD { return s.cs.Trailer() }

// Context is the stream's context.
func (s *Stream) Context() context.Context { return s.cs.Context() }
