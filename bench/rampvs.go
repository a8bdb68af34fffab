package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
)

// VsPlain names conn-ramp's comparator: the plain grpc-go chat server of
// bench/plainserver (`bidikit serve --comparator plain-grpc`).
const VsPlain = "plain-grpc"

// rampRounds alternates p.Rounds conn-ramps of the reference and of the
// plain grpc-go comparator, reference first, each server a fresh `bidikit
// serve` subprocess, and reports the medians: bytes_per_stream (the
// reference's RSS growth over streams held), vs_bytes_per_stream (the
// comparator's) and their ratio, with each round in the notes.
func rampRounds(ctx context.Context, p Params) (Result, error) {
	if p.Spawn == "" || p.Target != "" {
		return Result{}, fmt.Errorf("conn-ramp --vs %s spawns both servers (--spawn-server, no --target): each in its own process, so its RSS is its own", VsPlain)
	}
	rounds := max(p.Rounds, 1)
	var ours, theirs, ourG, theirG []float64
	var res Result
	var notes []string
	for i := range rounds {
		ref, err := rampOnce(ctx, "", "", p, false)
		if err != nil {
			return res, fmt.Errorf("conn-ramp round %d, reference: %w", i+1, err)
		}
		plain, err := rampOnce(ctx, "", "", p, true)
		if err != nil {
			return res, fmt.Errorf("conn-ramp round %d, %s: %w", i+1, VsPlain, err)
		}
		for _, r := range []Result{ref, plain} {
			if r.Extra["bytes_per_stream"] == 0 {
				return res, fmt.Errorf("conn-ramp round %d, %s: no memory reading (%v)", i+1, r.Params["server"], r.Notes)
			}
		}
		ours, theirs = append(ours, ref.Extra["bytes_per_stream"]), append(theirs, plain.Extra["bytes_per_stream"])
		ourG, theirG = append(ourG, ref.Extra["goroutines_per_stream"]), append(theirG, plain.Extra["goroutines_per_stream"])
		notes = append(notes, fmt.Sprintf("round %d: reference %s; %s %s", i+1, roundNote(ref), VsPlain, roundNote(plain)))
		res = ref
	}
	res.Params["vs"] = VsPlain
	res.Params["rounds"] = strconv.Itoa(rounds)
	res.Target = "spawned (a fresh server process per round)"
	m, vm := median(ours), median(theirs)
	res.Extra = map[string]float64{
		"bytes_per_stream": m, "vs_bytes_per_stream": vm, "ratio_to_vs": m / vm,
		"goroutines_per_stream": median(ourG), "vs_goroutines_per_stream": median(theirG),
		"streams_held": res.Extra["streams_held"], "connections": res.Extra["connections"],
	}
	res.Notes = append([]string{fmt.Sprintf("per idle member, median of %d alternating rounds: reference %.1f KiB, %s %.1f KiB, ratio %.2f",
		rounds, m/1024, VsPlain, vm/1024, m/vm)}, notes...)
	return res, nil
}

// roundNote is one server's figures in a round.
func roundNote(r Result) string {
	return fmt.Sprintf("%.1f KiB/member (RSS %.1f -> %.1f MiB, %.0f streams held, %.2f goroutines/member, %s)",
		r.Extra["bytes_per_stream"]/1024, r.Extra["memory_before_bytes"]/(1<<20), r.Extra["memory_after_bytes"]/(1<<20),
		r.Extra["streams_held"], r.Extra["goroutines_per_stream"], r.Notes[0])
}

// median of xs (not empty).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
