package protocol_test

import (
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// healthFile is grpc's health service file: a unary and a server-streaming method.
func healthFile() protoreflect.FileDescriptor { return healthpb.File_grpc_health_v1_health_proto }
