//go:build !race

package collab_test

// raceEnabled says the race detector is on (it slows gRPC about tenfold).
const raceEnabled = false
