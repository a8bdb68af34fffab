// Package trace loads editing traces (Joseph Gentle's editing-traces data
// set, CC BY 4.0) for benchmarks, tests and harness scenarios: sequential
// traces (startContent, endContent, txns of patches) and concurrent ones
// (the same plus each transaction's agent and parents). Positions count
// Unicode code points. The repository keeps copies in testdata/traces, with
// their attribution in its README.md.
package trace

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Patch is one splice: delete Del code points at Pos, then insert Ins there.
type Patch struct {
	Pos int
	Del int
	Ins string
}

// UnmarshalJSON reads the [pos, delCount, insertText] form. The common
// shape (two integers and a string) is parsed by hand; anything else goes
// through encoding/json, which also produces the errors.
func (p *Patch) UnmarshalJSON(b []byte) error {
	if ok := p.fast(b); ok {
		return nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("patch: %w", err)
	}
	if len(raw) != 3 {
		return fmt.Errorf("patch has %d elements, want [pos, delCount, insertText]", len(raw))
	}
	if err := json.Unmarshal(raw[0], &p.Pos); err != nil {
		return fmt.Errorf("patch pos: %w", err)
	}
	if err := json.Unmarshal(raw[1], &p.Del); err != nil {
		return fmt.Errorf("patch delCount: %w", err)
	}
	if err := json.Unmarshal(raw[2], &p.Ins); err != nil {
		return fmt.Errorf("patch insertText: %w", err)
	}
	return nil
}

// fast parses `[int,int,"text"]` without escapes or spaces.
func (p *Patch) fast(b []byte) bool {
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return false
	}
	parts := bytes.SplitN(b[1:len(b)-1], []byte(","), 3)
	if len(parts) != 3 {
		return false
	}
	pos, err1 := strconv.Atoi(string(parts[0]))
	del, err2 := strconv.Atoi(string(parts[1]))
	s := parts[2]
	if err1 != nil || err2 != nil || len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' ||
		bytes.IndexByte(s[1:len(s)-1], '"') >= 0 || bytes.IndexByte(s, '\\') >= 0 || !utf8.Valid(s) {
		return false
	}
	p.Pos, p.Del, p.Ins = pos, del, string(s[1:len(s)-1])
	return true
}

// Txn is one transaction: patches applied in order, each to the text left by
// the one before. Agent and Parents are set in concurrent traces only:
// Parents are indexes of earlier transactions whose merged result the
// patches' positions refer to (empty: the start content).
type Txn struct {
	Patches []Patch `json:"patches"`
	Agent   int     `json:"agent"`
	Parents []int   `json:"parents"`
}

// Trace is a loaded editing trace.
type Trace struct {
	// Kind is "concurrent" for concurrent traces, "" otherwise.
	Kind         string `json:"kind"`
	StartContent string `json:"startContent"`
	EndContent   string `json:"endContent"`
	NumAgents    int    `json:"numAgents"`
	Txns         []Txn  `json:"txns"`
}

// Concurrent reports whether t is a concurrent (multi-agent) trace.
func (t *Trace) Concurrent() bool { return t.Kind == "concurrent" }

// Patches counts the patches of every transaction.
func (t *Trace) Patches() int {
	n := 0
	for _, x := range t.Txns {
		n += len(x.Patches)
	}
	return n
}

// Load reads a trace from a .json or .json.gz file. Errors name the file.
func Load(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("trace %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	var t Trace
	if err := json.NewDecoder(r).Decode(&t); err != nil {
		return nil, fmt.Errorf("trace %s: %w", path, err)
	}
	for i, x := range t.Txns {
		for _, p := range x.Parents {
			if p < 0 || p >= i {
				return nil, fmt.Errorf("trace %s: txn %d has parent %d, which is not an earlier txn", path, i, p)
			}
		}
	}
	return &t, nil
}

// ErrNoTraces says that the traces directory could not be found.
var ErrNoTraces = errors.New("editing traces not found: the module's testdata/traces is missing (restore it from git) " +
	"and no ../shared/traces was found; or set BIDIKIT_TRACES to the directory holding automerge-paper.json.gz")

// ModuleDir is where the repository keeps its copy of the traces, relative
// to the module root (the directory holding go.mod).
const ModuleDir = "testdata/traces"

// Dir finds the traces directory: $BIDIKIT_TRACES when set; else the
// module's testdata/traces (the module root is the nearest directory holding
// go.mod above the working directory or above this source file); else
// ../shared/traces beside the checkout, found by walking up the same way.
func Dir() (string, error) {
	if d := os.Getenv("BIDIKIT_TRACES"); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d, nil
		}
		return "", fmt.Errorf("BIDIKIT_TRACES=%s is not a directory", d)
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, s := range starts {
		if root, ok := moduleRoot(s); ok {
			if c := filepath.Join(root, filepath.FromSlash(ModuleDir)); isDir(c) {
				return c, nil
			}
		}
	}
	for _, s := range starts {
		for d := s; ; d = filepath.Dir(d) {
			if c := filepath.Join(d, "shared", "traces"); isDir(c) {
				return c, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", ErrNoTraces
}

// moduleRoot is the nearest directory at or above dir holding a go.mod.
func moduleRoot(dir string) (string, bool) {
	for d := dir; ; d = filepath.Dir(d) {
		if st, err := os.Stat(filepath.Join(d, "go.mod")); err == nil && !st.IsDir() {
			return d, true
		}
		if filepath.Dir(d) == d {
			return "", false
		}
	}
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// Path returns the path of the named trace file (e.g.
// "automerge-paper.json.gz") in Dir, or an error when it is absent.
func Path(name string) (string, error) {
	d, err := Dir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(d, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("trace %s is missing from %s: %w", name, d, err)
	}
	return p, nil
}
