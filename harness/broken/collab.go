package broken

import (
	"google.golang.org/grpc"

	naiveeditor "github.com/bidikit/bidikit/workshop/ex03_naive_editor"
)

// StartCollab serves a collab server (bidikit.collab.v1) whose one defect
// is that it does not converge: it applies every operation to the newest
// text, whatever version it was made against, and broadcasts it as
// applied, so replicas that transform concurrent operations end up with a
// text other than the server's. Caught by convergence. It is workshop
// exercise 3 (workshop/ex03_naive_editor), served as the corpus serves its
// servers.
func StartCollab() (*Server, error) {
	var stop func()
	return serve("collab (naive editor)", func(gs *grpc.Server) { stop = naiveeditor.Register(gs) }, func() { stop() })
}
