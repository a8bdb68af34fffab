// Package wire receives client events undecoded, so that a service — not
// the gRPC codec — decides the status of input it cannot decode. grpc-go
// answers a codec failure inside RecvMsg with INTERNAL on its own, before
// the handler sees the error; bidikit's contract says INVALID_ARGUMENT.
package wire

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Frame holds one received message's bytes. It is a legacy (APIv1-style)
// message with its own Unmarshal, which the protobuf runtime calls with the
// raw bytes, so the default gRPC codec never fails on it. A Frame is owned
// by the one goroutine that receives on a stream and is reused between
// messages.
type Frame struct {
	b []byte
}

func (*Frame) Reset()         {}
func (*Frame) String() string { return "wire.Frame" }
func (*Frame) ProtoMessage()  {}

// Unmarshal keeps a copy of b (the codec recycles its buffer).
func (f *Frame) Unmarshal(b []byte) error {
	f.b = append(f.b[:0], b...)
	return nil
}

// Marshal returns the bytes as they are.
func (f *Frame) Marshal() ([]byte, error) { return f.b, nil }

// Bytes returns the last received message's bytes (valid until the next
// receive into f).
func (f *Frame) Bytes() []byte { return f.b }

// Decode decodes the bytes f holds into m; bytes that do not decode as m
// give an INVALID_ARGUMENT status error saying so.
func Decode(f *Frame, m proto.Message) error {
	if err := proto.Unmarshal(f.b, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "malformed message (%d bytes): %v", len(f.b), err)
	}
	return nil
}

// Recv receives one message from ss through f and decodes it into m. Stream
// errors (io.EOF included) are returned as they are; bytes that do not
// decode as m give an INVALID_ARGUMENT status error saying so.
func Recv(ss grpc.ServerStream, f *Frame, m proto.Message) error {
	if err := ss.RecvMsg(f); err != nil {
		return err
	}
	return Decode(f, m)
}
