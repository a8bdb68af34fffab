package protocol_test

import (
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// healthFile is grpc's health service file: a unary and a server-streaming method.
func healthFile() protoreflect.FileDescriptor { return healthpb.File_grpc_health_v1_health_proto }

func protoMarshal(m proto.Message) ([]byte, error)   { return proto.Marshal(m) }
func protoUnmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }
