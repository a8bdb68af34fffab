package engine

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/bidikit/bidikit/harness/scenario"
)

// EditorParams: opens documents and submits random edits, or replays a
// trace file (sequential editing-traces format) when Trace is set.
type EditorParams struct {
	// Trace is a path to a .json or .json.gz editing trace.
	Trace string `yaml:"trace"`
	// MaxInsert bounds random insert length (code points).
	MaxInsert int `yaml:"max_insert"`
	// DeleteRatio is the share of random edits that delete.
	DeleteRatio float64 `yaml:"delete_ratio"`
}

// CheckParams implements scenario.ParamsChecker; a relative trace path
// becomes absolute (relative to the scenario file).
func (p *EditorParams) CheckParams(pc *scenario.ParamsCheck) {
	if p.MaxInsert < 1 {
		pc.Bad("max_insert", "must be at least 1, got %d", p.MaxInsert)
	}
	if !(p.DeleteRatio >= 0 && p.DeleteRatio <= 1) {
		pc.Bad("delete_ratio", "must be between 0 and 1, got %v", p.DeleteRatio)
	}
	if p.Trace == "" {
		return
	}
	if !strings.HasSuffix(p.Trace, ".json") && !strings.HasSuffix(p.Trace, ".json.gz") {
		pc.Bad("trace", "%q must be a .json or .json.gz editing trace", p.Trace)
		return
	}
	tp := p.Trace
	if !filepath.IsAbs(tp) {
		tp = filepath.Join(filepath.Dir(pc.File), tp)
	}
	if _, err := os.Stat(tp); err != nil {
		pc.Bad("trace", "cannot read trace %s (relative paths are relative to the scenario file): %v", tp, err)
		return
	}
	p.Trace = tp
}

func init() {
	registerBehaviour(scenario.Behaviour{Name: "editor", Service: scenario.Collab, Summary: "random or trace-driven edits to documents", DefaultRate: 2},
		func() *EditorParams { return &EditorParams{MaxInsert: 8, DeleteRatio: 0.3} },
		func(c *vclient, p *EditorParams) (err error) {
			c.d, err = newCollabDriver(c, p, false)
			return err
		}, nil)
}
