// Package workshop is the bidikit workshop track: small broken servers that
// speak the bidikit protos, each with an exercise sheet and the scenario
// suite that proves it broken (red) until the student fixes it (green).
//
// Layout: one numbered folder per exercise (ex01_leaky_chat, ...) holding
//
//	server.go     the broken server, one small package with
//	              func Register(*grpc.Server) (stop func())
//	README.md     the sheet in English: story, what to observe, what to fix,
//	              hints in increasing strength, what green means
//	README.ja.md  the same sheet in Japanese
//	suite/*.yaml  the exercise's scenarios (docs/scenarios.md)
//
// Everything is embedded (go:embed), so the bidikit binary can list, serve,
// check and hand out (init) every exercise on its own. Exercise.Fails names
// the checks the sheet promises to fail against the broken server; the
// reference server passes the same suite. The Ginkgo suite of this package
// holds both promises for every exercise.
package workshop

import (
	"bufio"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc"

	"github.com/bidikit/bidikit/harness/scenario"
	leakychat "github.com/bidikit/bidikit/workshop/ex01_leaky_chat"
	trustinggame "github.com/bidikit/bidikit/workshop/ex02_trusting_game"
	naiveeditor "github.com/bidikit/bidikit/workshop/ex03_naive_editor"
	blockingbroadcast "github.com/bidikit/bidikit/workshop/ex04_blocking_broadcast"
	ghostplayers "github.com/bidikit/bidikit/workshop/ex05_ghost_players"
	outoforder "github.com/bidikit/bidikit/workshop/ex06_out_of_order"
)

//go:embed ex01_leaky_chat ex02_trusting_game ex03_naive_editor ex04_blocking_broadcast ex05_ghost_players ex06_out_of_order
var files embed.FS

// Exercise is one workshop exercise. Values are immutable; All returns
// fresh copies.
type Exercise struct {
	// Number is the exercise's number (1, 2, ...), as typed on the command line.
	Number int
	// Slug is the folder name without the number, e.g. "leaky_chat".
	Slug string
	// Dir is the folder name, e.g. "ex01_leaky_chat".
	Dir string
	// Package is the Go package name of the broken server, e.g. "leakychat".
	Package string
	// Title and Summary are one line each, for `bidikit workshop list`.
	Title, Summary string
	// Service is the bidikit service the exercise speaks: chat, collab or game.
	Service string
	// Register adds the broken server to s; stop ends every goroutine the
	// server started on its own (call it before or right after s.Stop).
	Register func(s *grpc.Server) (stop func())
	// Fails lists the checks the sheet promises to fail against the broken
	// server, sorted; every other check of the suite passes.
	Fails []string
	// Files is the exercise folder: server.go, README.md, README.ja.md, suite/.
	Files fs.FS
	// Suite is the suite folder: one or more scenario files (*.yaml).
	Suite fs.FS
}

// catalogue is the fixed list behind All.
var catalogue = []struct {
	dir, pkg, title, summary, service string
	register                          func(*grpc.Server) func()
	fails                             []string
}{
	{"ex01_leaky_chat", "leakychat", "The chat server that never forgets",
		"every connection stays in a map with a heartbeat goroutine forever: goroutines and memory leak",
		scenario.Chat, leakychat.Register, []string{"leaks"}},
	{"ex02_trusting_game", "trustinggame", "The game server that believes everything",
		"no rate limit, no input validation: a flooder moves faster than the rules allow and walks off the map",
		scenario.Game, trustinggame.Register, []string{"fairness", "game-invariants"}},
	{"ex03_naive_editor", "naiveeditor", "The editor without transformation",
		"operations are applied to the newest text whatever their base version: replicas diverge",
		scenario.Collab, naiveeditor.Register, []string{"convergence"}},
	{"ex04_blocking_broadcast", "blockingbroadcast", "One slow reader stalls the room",
		"the broadcast sends to every member under one lock: a slow reader blocks everyone",
		scenario.Chat, blockingbroadcast.Register, []string{"fairness"}},
	{"ex05_ghost_players", "ghostplayers", "Playing on for players who have gone",
		"cancelled streams are never noticed: their handlers keep ticking and they stay in the match",
		scenario.Game, ghostplayers.Register, []string{"leaks"}},
	{"ex06_out_of_order", "outoforder", "Messages out of order",
		"one goroutine per delivery: every message arrives once, numbered alike for all, but not in order",
		scenario.Chat, outoforder.Register, []string{"delivery-order"}},
}

// All returns every exercise, in number order.
func All() []Exercise {
	out := make([]Exercise, 0, len(catalogue))
	for _, c := range catalogue {
		n, _ := strconv.Atoi(strings.TrimPrefix(c.dir[:4], "ex"))
		sub, err := fs.Sub(files, c.dir)
		if err != nil {
			panic("workshop: embedded folder missing: " + c.dir) // a build mistake, caught by the tests
		}
		suite, err := fs.Sub(sub, "suite")
		if err != nil {
			panic("workshop: embedded suite missing: " + c.dir)
		}
		out = append(out, Exercise{Number: n, Slug: c.dir[5:], Dir: c.dir, Package: c.pkg, Title: c.title,
			Summary: c.summary, Service: c.service, Register: c.register,
			Fails: append([]string(nil), c.fails...), Files: sub, Suite: suite})
	}
	return out
}

// Get returns exercise n, or an error listing the valid numbers.
func Get(n int) (Exercise, error) {
	all := All()
	for _, ex := range all {
		if ex.Number == n {
			return ex, nil
		}
	}
	return Exercise{}, fmt.Errorf("no exercise %d: choose 1..%d (bidikit workshop list)", n, len(all))
}

// Scenarios parses the exercise's suite, in file name order. Errors name
// the embedded file (a broken suite is a bidikit bug).
func (ex Exercise) Scenarios() ([]*scenario.Scenario, error) {
	names, err := fs.Glob(ex.Suite, "*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("exercise %d: no scenario files in its suite", ex.Number)
	}
	var out []*scenario.Scenario
	for _, name := range names {
		data, err := fs.ReadFile(ex.Suite, name)
		if err != nil {
			return nil, err
		}
		s, err := scenario.Parse(path.Join("workshop", ex.Dir, "suite", name), data)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Sheet returns the exercise sheet in lang ("en" or "ja").
func (ex Exercise) Sheet(lang string) (string, error) {
	name := "README.md"
	if lang == "ja" {
		name = "README.ja.md"
	}
	b, err := fs.ReadFile(ex.Files, name)
	return string(b), err
}

// Hints returns the sheet's hints in increasing strength: the numbered
// items ("1. ...") of its "## Hints" section ("## ヒント" in Japanese). An
// item runs until the next item or the end of the section.
func (ex Exercise) Hints(lang string) []string {
	sheet, err := ex.Sheet(lang)
	if err != nil {
		return nil
	}
	heading := "## Hints"
	if lang == "ja" {
		heading = "## ヒント"
	}
	var hints []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(sheet))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = strings.HasPrefix(line, heading)
			continue
		}
		if !in {
			continue
		}
		if num, rest, ok := strings.Cut(line, ". "); ok && num != "" && strings.Trim(num, "0123456789") == "" {
			hints = append(hints, strings.TrimSpace(rest))
			continue
		}
		if t := strings.TrimSpace(line); t != "" && len(hints) > 0 {
			hints[len(hints)-1] += " " + t
		}
	}
	return hints
}
