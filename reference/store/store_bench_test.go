//go:build unix

package store_test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bidikit/bidikit/reference/store"
)

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSQLiteAppend measures committed (acknowledged) records per
// second with parallel appenders, one stream each (8 per core, and 50 per
// core: 100 streams on 2 cores, the chat-echo benchmark's rooms), 100-byte
// payloads and a key per record, for several max batch sizes. The clock
// runs from the first Append to the last callback.
//
//	go test -run '^$' -bench BenchmarkSQLiteAppend -benchtime 3s ./reference/store/
func BenchmarkSQLiteAppend(b *testing.B) {
	for _, c := range []struct{ batch, perCore int }{{1, 8}, {100, 8}, {1000, 8}, {1000, 50}, {4096, 50}, {200, 50}} {
		batch := c.batch
		b.Run(fmt.Sprintf("batch=%d/appenders-per-core=%d", batch, c.perCore), func(b *testing.B) {
			s, err := store.OpenSQLite(filepath.Join(b.TempDir(), "bench.db"), store.WithMaxBatch(batch))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			payload := make([]byte, 100)
			var (
				acked   sync.WaitGroup
				failed  atomic.Int64
				streams atomic.Int64
			)
			acked.Add(b.N)
			done := func(err error) {
				if err != nil {
					failed.Add(1)
				}
				acked.Done()
			}
			b.SetParallelism(c.perCore)
			b.ResetTimer()
			cpu0 := cpuTime()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				name := "bench/" + strconv.FormatInt(streams.Add(1), 10)
				var seq uint64
				for pb.Next() {
					seq++
					s.Append(store.Record{
						Stream:    name,
						Seq:       seq,
						Key:       name + "/" + strconv.FormatUint(seq, 10),
						UnixNanos: time.Now().UnixNano(),
						Payload:   payload,
					}, done)
				}
			})
			acked.Wait()
			elapsed := time.Since(start)
			cpu := cpuTime() - cpu0
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d appends failed", n)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
			// CPU of the whole process (appenders, writer, GC) per record: a
			// figure less disturbed than records/s by other load on the host.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/record")
		})
	}
}
