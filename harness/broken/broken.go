// Package broken is the corpus of servers that prove the checks: small,
// independent servers with exactly one known defect each, plus a correct
// variant, so that every check in harness/check can be shown failing
// through the real engine over real gRPC — and the other checks shown not
// to blame the same run.
//
// StartChat serves a short, independent chat server (bidikit.chat.v1) with
// one ChatDefect, or none; StartCollab and StartGame serve workshop servers
// whose one defect is a collab server that does not converge and a game
// server that believes every move. Each defect's code path is marked with a
// comment "// defect: <Name>".
//
// Every server listens on free loopback ports and offers what the checks
// read: the gRPC health service and channelz, and an admin HTTP listener
// with /debug/pprof/ and /healthz.
package broken

import (
	"net/http"

	"google.golang.org/grpc"

	"github.com/bidikit/bidikit/internal/loopserve"
)

// Server is one running server of the corpus (internal/loopserve): Addr,
// AdminURL (/debug/pprof/ and /healthz: what the leaks check reads) and
// Stop, which waits for every goroutine it started, including those a
// defect leaked.
type Server = loopserve.Server

// maxRecvMsgSize bounds one received message, as the reference's default
// does.
const maxRecvMsgSize = 64 << 10

// serve serves a gRPC server set up by register on a free loopback port,
// with health and channelz, plus the admin endpoints on another. stopSvc
// runs first at Stop: it releases whatever the service's handlers wait on
// that gRPC's own Stop does not end. Messages over 64 KiB are refused by
// grpc-go with RESOURCE_EXHAUSTED, as the reference refuses them (its
// --max-recv-msg-size default). It returns once both ports listen.
func serve(what string, register func(*grpc.Server), stopSvc func()) (*Server, error) {
	return loopserve.Serve(loopserve.Options{What: "broken " + what + " server", WaitForHandlers: true,
		Server: []grpc.ServerOption{grpc.MaxRecvMsgSize(maxRecvMsgSize)}},
		func(gs *grpc.Server) func() { register(gs); return stopSvc })
}

// adminMux serves /debug/pprof/ (net/http/pprof) and /healthz.
func adminMux() *http.ServeMux { return loopserve.AdminMux() }
