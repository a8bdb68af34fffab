package broken

import (
	"google.golang.org/grpc"

	trustinggame "github.com/bidikit/bidikit/workshop/ex02_trusting_game"
)

// StartGame serves a game server (bidikit.game.v1) whose one defect is
// that it believes every input: a move of any length is applied as sent (a
// speed hack moves a player as far as it likes, off the map too), and
// inputs are not limited per tick. Caught by game-invariants. It is
// workshop exercise 2 (workshop/ex02_trusting_game), served as the corpus
// serves its servers.
func StartGame() (*Server, error) {
	var stop func()
	return serve("game (trusting)", func(gs *grpc.Server) { stop = trustinggame.Register(gs) }, func() { stop() })
}
