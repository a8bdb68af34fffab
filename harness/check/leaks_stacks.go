package check

import (
	"bufio"
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// stackFrames is how many frames (runtime frames skipped) name a goroutine
// stack in the leaks evidence, and the frames stacks are grouped by.
const stackFrames = 4

// maxStackGroups bounds the stack groups kept from one goroutine profile;
// groups past it are counted together under one "(other stacks)" key.
const maxStackGroups = 5000

// topStacks is how many growing stacks the leaks evidence names.
const topStacks = 5

// otherStacks is the key of the goroutines past maxStackGroups.
const otherStacks = "(other stacks)"

// goroutineProfile is a goroutine profile in the debug=1 text format
// (/debug/pprof/goroutine?debug=1): the total and the goroutines counted
// by stack. Stacks are keyed by their first stackFrames frames outside the
// runtime ("pkg.Func file.go:line <- ..."), so goroutines parked at the
// same place in the same functions count together whatever their labels.
type goroutineProfile struct {
	total  int
	stacks map[string]int
	// harness counts the goroutines left out of total and stacks: those
	// of the harness's own fault proxy (see harnessFrames).
	harness int
}

// harnessFrames mark goroutines that belong to the harness, not the server:
// the in-process toxiproxy that injects connection faults. When the server
// runs in the harness's process (the embedded default), they show in its
// profile; toxiproxy v2.12.0's latency toxic leaves one blocked for each
// connection closed while it held a delayed chunk. They are never the
// server's leak.
var harnessFrames = []string{"/Shopify/toxiproxy/"}

// parseGoroutineProfile reads a debug=1 goroutine profile:
//
//	goroutine profile: total 5
//	3 @ 0x47d92e 0x4158ee 0x4dc019 0x483e41
//	#	0x4dc018	main.hold+0x18	/tmp/gp/main.go:10
//
// Blank lines and "# labels:" lines are skipped.
func parseGoroutineProfile(body string) (goroutineProfile, error) {
	p := goroutineProfile{total: -1, stacks: map[string]int{}}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return p, fmt.Errorf("empty goroutine profile")
	}
	head := sc.Text()
	v, ok := strings.CutPrefix(head, "goroutine profile: total ")
	if !ok {
		return p, fmt.Errorf("not a debug=1 goroutine profile: first line %q", leakClip(head, 80))
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return p, fmt.Errorf("goroutine profile total %q: %w", leakClip(v, 40), err)
	}
	p.total = n
	count := 0 // goroutines of the group being read (0: none)
	var frames []string
	harness := false // the group has a harness frame
	flush := func() {
		if count > 0 && harness {
			p.harness += count
		} else if count > 0 {
			k := strings.Join(frames, " <- ")
			if k == "" {
				k = "(no frames)"
			}
			if _, known := p.stacks[k]; !known && len(p.stacks) >= maxStackGroups {
				k = otherStacks
			}
			p.stacks[k] += count
		}
		count, frames, harness = 0, frames[:0], false
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#\t") || strings.HasPrefix(line, "# 0x"):
			for _, h := range harnessFrames {
				harness = harness || strings.Contains(line, h)
			}
			if f, ok := frameOf(line); ok && len(frames) < stackFrames {
				frames = append(frames, f)
			}
		case strings.HasPrefix(line, "#"), strings.TrimSpace(line) == "":
			// labels or a blank line between groups
		default:
			flush()
			n, _, ok := strings.Cut(line, " @ ")
			if !ok {
				continue // not a group header: ignore rather than misread
			}
			if c, err := strconv.Atoi(strings.TrimSpace(n)); err == nil && c > 0 {
				count = c
			}
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return p, fmt.Errorf("reading goroutine profile: %w", err)
	}
	p.total -= p.harness
	return p, nil
}

// frameOf renders one "#	0xaddr	pkg.Func+0xoff	/path/file.go:line" line
// as "pkg.Func file.go:line" (package path shortened to its last element);
// ok is false for runtime, internal and sync frames, which say nothing
// about who leaked.
func frameOf(line string) (string, bool) {
	f := strings.Fields(strings.TrimPrefix(line, "#"))
	if len(f) < 2 {
		return "", false
	}
	fn := f[1]
	if i := strings.LastIndex(fn, "+0x"); i > 0 {
		fn = fn[:i]
	}
	// Runtime and lock frames say where a goroutine waits, not who left it
	// there: a goroutine parked on a mutex would otherwise be named by
	// sync's frames alone.
	if strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(fn, "internal/") || strings.HasPrefix(fn, "sync.") {
		return "", false
	}
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		fn = fn[i+1:]
	}
	if len(f) >= 3 {
		return fn + " " + path.Base(f[2]), true
	}
	return fn, true
}

// stackGrowth is one stack whose goroutines grew between two profiles.
type stackGrowth struct {
	stack       string
	base, after int
}

// growingStacks returns the stacks with more goroutines in after than in
// base, most growth first (ties by stack, for stable evidence), at most n.
func growingStacks(base, after goroutineProfile, n int) []stackGrowth {
	var out []stackGrowth
	for k, a := range after.stacks {
		if b := base.stacks[k]; a > b {
			out = append(out, stackGrowth{stack: k, base: b, after: a})
		}
	}
	slices.SortFunc(out, func(x, y stackGrowth) int {
		if c := cmp.Compare(y.after-y.base, x.after-x.base); c != 0 {
			return c
		}
		return cmp.Compare(x.stack, y.stack)
	})
	return out[:min(n, len(out))]
}

// detail renders g for evidence, bounded in size.
func (g stackGrowth) detail() string {
	return leakClip(fmt.Sprintf("+%s (%d at baseline, %d after) in %s", leakPlural(g.after-g.base, "goroutine"), g.base, g.after, g.stack), 600)
}

// leakClip shortens s to at most n bytes, marking the cut.
func leakClip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
