// Package service is the contract between the reference server's assembly
// (package reference) and each bidikit service it hosts (chat, collab, game).
package service

import (
	"context"

	"google.golang.org/grpc"
)

// Service is one hosted bidi service.
type Service interface {
	// Name is the fully qualified gRPC service name, e.g.
	// "bidikit.chat.v1.ChatService"; health is reported under it.
	Name() string
	// Register adds the service's handlers to s.
	Register(s *grpc.Server)
	// Drain begins graceful shutdown: every open stream of this service ends
	// with UNAVAILABLE "server shutting down" after flushing what it already
	// acknowledged, and new streams are refused. Drain returns when all
	// streams have ended or ctx is done.
	Drain(ctx context.Context) error
	// Close releases what the service holds (background loops, storage
	// handles it owns). Called once, after Drain and after the gRPC server
	// stopped.
	Close() error
}
