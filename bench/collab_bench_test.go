package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/bidikit/bidikit/bench"
	"github.com/bidikit/bidikit/internal/collab/trace"
)

// BenchmarkCollabTraceAutomergePaper runs the collab-trace workload (the
// same code path as `bidikit bench collab-trace`) on the whole
// automerge-paper trace against the in-process reference server. One
// iteration is the whole trace; target <= 10 s.
//
//	go test -run '^$' -bench CollabTraceAutomergePaper -benchtime 1x ./bench/
func BenchmarkCollabTraceAutomergePaper(b *testing.B) {
	path, err := trace.Path("automerge-paper.json.gz")
	if err != nil {
		b.Fatal("fixture missing: the automerge-paper editing trace (testdata/traces/automerge-paper.json.gz): " + err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var ops int64
	for b.Loop() {
		res, err := bench.Run(ctx, bench.CollabTrace, bench.Params{Trace: path})
		if err != nil {
			b.Fatal(err)
		}
		ops += res.Messages
	}
	b.ReportMetric(float64(ops)/b.Elapsed().Seconds(), "ops/s")
}
