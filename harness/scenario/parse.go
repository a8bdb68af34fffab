package scenario

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/fault"
)

// Defaults and limits of the scenario format (documented in docs/scenarios.md).
const (
	// DefaultSeed is the seed of a scenario that names none; the report
	// records the seed used either way.
	DefaultSeed int64 = 1
	// DefaultSettle is the wait after clients stop before quiet-needing checks.
	DefaultSettle = 2 * time.Second
	// MaxRoleCount bounds one role's client count (catches typos like 1e9).
	MaxRoleCount = 1_000_000
	// MaxStreamsPerConnection bounds streams_per_connection.
	MaxStreamsPerConnection = 10_000
	// MaxRate bounds a role's per-client rate (messages per second).
	MaxRate = 1_000_000.0
	// MaxBodyBytes bounds body_bytes and oversize bytes in behaviour params.
	MaxBodyBytes = 64 << 20
	// maxErrors bounds the problems reported for one file.
	maxErrors = 20
)

// defaultScopePrefix is the scope_prefix a role gets when it names none.
var defaultScopePrefix = map[string]string{Chat: "room", Collab: "doc", Game: "match"}

// scopeKey is the service-specific spelling of Role.Scopes.
var scopeKey = map[string]string{Chat: "rooms", Collab: "documents", Game: "matches"}

// Error is one problem in a scenario file: where it is (file, 1-based line
// and column) and which field (a path like "roles[1].rate"; empty for the
// file as a whole). Load and Parse return these, joined with errors.Join
// when a file has several; errors.As finds the first.
type Error struct {
	File string
	Line int
	Col  int
	Path string
	Msg  string
}

// Error formats "FILE:LINE:COL: PATH: MSG".
func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Col)
	}
	if e.Path != "" {
		return loc + ": " + e.Path + ": " + e.Msg
	}
	return loc + ": " + e.Msg
}

// Load reads scenarios from files and folders. A folder contributes every
// *.yaml and *.yml file inside it, recursively (skipping hidden folders), in
// sorted order; a folder with none is an error naming it. A file named twice
// is read once. All files are parsed and every problem is returned (joined);
// on any problem the result is nil. Scenario names must be unique across the
// loaded files.
func Load(paths ...string) ([]*Scenario, error) {
	if len(paths) == 0 {
		return nil, errors.New("no scenario files or folders given")
	}
	var files []string
	seen := map[string]bool{}
	var errs []error
	add := func(f string) {
		abs, err := filepath.Abs(f)
		if err != nil {
			abs = f
		}
		if !seen[abs] {
			seen[abs] = true
			files = append(files, f)
		}
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("scenario path %s: %w", p, err))
			continue
		}
		if !st.IsDir() {
			add(p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("scenario folder %s: %w", p, err))
			continue
		}
		if len(found) == 0 {
			errs = append(errs, fmt.Errorf("scenario folder %s: no scenario files (*.yaml, *.yml) in it", p))
			continue
		}
		sort.Strings(found)
		for _, f := range found {
			add(f)
		}
	}
	var out []*Scenario
	byName := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("scenario file %s: %w", f, err))
			continue
		}
		s, err := Parse(f, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := byName[s.Name]; dup {
			errs = append(errs, &Error{File: f, Line: 1, Col: 1, Path: "name",
				Msg: fmt.Sprintf("scenario name %q is already used by %s; names must be unique", s.Name, prev)})
			continue
		}
		byName[s.Name] = f
		out = append(out, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Parse parses and validates one scenario file's contents; file is the name
// used in messages and recorded in Scenario.File. Unknown fields, wrong
// types and impossible values are errors naming file, line, column and field.
func Parse(file string, data []byte) (*Scenario, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, yamlError(file, err)
	}
	var docs []*ast.DocumentNode
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		return nil, &Error{File: file, Msg: "file is empty; a scenario needs at least service, duration, roles and checks"}
	}
	if len(docs) > 1 {
		line, col := nodePos(docs[1].Body)
		return nil, &Error{File: file, Line: line, Col: col, Msg: "one scenario per file: found a second YAML document"}
	}
	p := newWalker(file)
	return p.scenario(docs[0].Body)
}

// rawScenario is the file's shape; the walker checks shapes and records
// positions before it is decoded, then the parser turns it into a Scenario.
type rawScenario struct {
	Name                 string        `yaml:"name"`
	Description          string        `yaml:"description"`
	Service              string        `yaml:"service"`
	Seed                 int64         `yaml:"seed"`
	Duration             time.Duration `yaml:"duration"`
	Ramp                 time.Duration `yaml:"ramp"`
	Settle               time.Duration `yaml:"settle"`
	StreamsPerConnection int           `yaml:"streams_per_connection"`
	Roles                []rawRole     `yaml:"roles"`
	Faults               []rawFault    `yaml:"faults"`
	Checks               []ast.Node    `yaml:"checks"`
	Thresholds           ast.Node      `yaml:"thresholds"`
}

type rawRole struct {
	Name        string        `yaml:"name"`
	Count       int           `yaml:"count"`
	Behaviour   string        `yaml:"behaviour"`
	Rate        ast.Node      `yaml:"rate"`
	Rooms       int           `yaml:"rooms"`
	Documents   int           `yaml:"documents"`
	Matches     int           `yaml:"matches"`
	ScopePrefix string        `yaml:"scope_prefix"`
	Start       time.Duration `yaml:"start"`
	Stop        time.Duration `yaml:"stop"`
	Params      ast.Node      `yaml:"params"`
}

type rawFault struct {
	Fault       string        `yaml:"fault"`
	At          time.Duration `yaml:"at"`
	Every       time.Duration `yaml:"every"`
	Until       time.Duration `yaml:"until"`
	Roles       []string      `yaml:"roles"`
	Fraction    float64       `yaml:"fraction"`
	Count       int           `yaml:"count"`
	Probability float64       `yaml:"probability"`
	Params      ast.Node      `yaml:"params"`
}

// walker checks a YAML node tree against a Go type, strictly, recording
// every key and value node by field path so later messages can point at
// them. One walker belongs to one parse (or one decode call); not shared.
type walker struct {
	file string
	errs []error
	keys map[string]ast.Node
	vals map[string]ast.Node
}

func newWalker(file string) *walker {
	return &walker{file: file, keys: map[string]ast.Node{}, vals: map[string]ast.Node{}}
}

func (w *walker) scenario(body ast.Node) (*Scenario, error) {
	w.shape(body, reflect.TypeOf(rawScenario{}), "")
	if len(w.errs) > 0 {
		return nil, w.err()
	}
	var raw rawScenario
	if err := yaml.NodeToValue(body, &raw, yaml.Strict()); err != nil {
		return nil, w.convert(err, "")
	}
	s := w.build(&raw)
	if len(w.errs) > 0 {
		return nil, w.err()
	}
	return s, nil
}

func (w *walker) err() error {
	if len(w.errs) == 1 {
		return w.errs[0]
	}
	return errors.Join(w.errs...)
}

func (w *walker) has(path string) bool { _, ok := w.keys[path]; return ok }

// at returns the position for path: its key when the field is present, else
// its value, else the nearest present parent.
func (w *walker) at(path string) (int, int) {
	for {
		if n, ok := w.keys[path]; ok {
			return nodePos(n)
		}
		if n, ok := w.vals[path]; ok {
			return nodePos(n)
		}
		if path == "" {
			return 1, 1
		}
		path = parentPath(path)
	}
}

func (w *walker) errorf(path, format string, args ...any) {
	if len(w.errs) >= maxErrors {
		return
	}
	line, col := w.at(path)
	w.errs = append(w.errs, &Error{File: w.file, Line: line, Col: col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// convert turns a go-yaml error into an *Error at its token's field path.
func (w *walker) convert(err error, fallback string) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		tk := ye.GetToken()
		path := fallback
		for p, n := range w.vals {
			if n.GetToken() == tk {
				path = p
				break
			}
		}
		for p, n := range w.keys {
			if n.GetToken() == tk {
				path = p
				break
			}
		}
		return &Error{File: w.file, Line: tk.Position.Line, Col: tk.Position.Column, Path: path, Msg: ye.GetMessage()}
	}
	line, col := w.at(fallback)
	return &Error{File: w.file, Line: line, Col: col, Path: fallback, Msg: err.Error()}
}

func yamlError(file string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		tk := ye.GetToken()
		return &Error{File: file, Line: tk.Position.Line, Col: tk.Position.Column, Msg: "YAML syntax: " + ye.GetMessage()}
	}
	return &Error{File: file, Msg: "YAML syntax: " + err.Error()}
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	astNodeType  = reflect.TypeOf((*ast.Node)(nil)).Elem()
)

// shape checks node against t (strictly: unknown fields, wrong kinds,
// fractional numbers for integers, unitless durations are all errors) and
// records the nodes it visits under path.
func (w *walker) shape(node ast.Node, t reflect.Type, path string) {
	node = unwrap(node)
	if node == nil {
		return
	}
	w.vals[path] = node
	if t == astNodeType || t.Kind() == reflect.Interface {
		return
	}
	if _, alias := node.(*ast.AliasNode); alias {
		return // resolved and checked by the decoder
	}
	if t.Kind() == reflect.Ptr {
		w.shape(node, t.Elem(), path)
		return
	}
	if _, null := node.(*ast.NullNode); null {
		w.errorf(path, "has no value; give %s or remove the line", describeType(t))
		return
	}
	switch {
	case t == durationType:
		s, ok := node.(*ast.StringNode)
		if !ok {
			w.errorf(path, "must be a duration with a unit, like \"30s\" or \"2m\", not %s", describeNode(node))
			return
		}
		if _, err := time.ParseDuration(s.Value); err != nil {
			w.errorf(path, "%q is not a duration; write it like \"30s\", \"1m30s\" or \"500ms\"", s.Value)
		}
	case t.Kind() == reflect.Struct:
		pairs, ok := mapPairs(node)
		if !ok {
			w.errorf(path, "must be a mapping of %s, not %s", strings.Join(fieldNames(t), ", "), describeNode(node))
			return
		}
		fields := fieldMap(t)
		for _, kv := range pairs {
			if _, merge := kv.Key.(*ast.MergeKeyNode); merge {
				continue
			}
			key := keyText(kv.Key)
			kp := joinPath(path, key)
			w.keys[kp] = kv.Key
			ft, ok := fields[key]
			if !ok && len(fields) == 0 {
				w.errorf(kp, "unknown field %q: this takes no parameters", key)
				continue
			}
			if !ok {
				w.errorf(kp, "unknown field %q%s (known: %s)", key, suggest(key, fieldNames(t)), strings.Join(fieldNames(t), ", "))
				continue
			}
			w.shape(kv.Value, ft, kp)
		}
	case t.Kind() == reflect.Slice:
		seq, ok := node.(*ast.SequenceNode)
		if !ok {
			w.errorf(path, "must be a list, not %s", describeNode(node))
			return
		}
		for i, v := range seq.Values {
			w.shape(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t.Kind() == reflect.Map:
		pairs, ok := mapPairs(node)
		if !ok {
			w.errorf(path, "must be a mapping, not %s", describeNode(node))
			return
		}
		for _, kv := range pairs {
			kp := joinPath(path, keyText(kv.Key))
			w.keys[kp] = kv.Key
			w.shape(kv.Value, t.Elem(), kp)
		}
	case t.Kind() == reflect.String:
		switch node.(type) {
		case *ast.StringNode, *ast.LiteralNode:
		default:
			w.errorf(path, "must be text, not %s (quote it if you meant text)", describeNode(node))
		}
	case t.Kind() == reflect.Bool:
		if _, ok := node.(*ast.BoolNode); !ok {
			w.errorf(path, "must be true or false, not %s", describeNode(node))
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		n, ok := node.(*ast.IntegerNode)
		if !ok {
			if s, str := node.(*ast.StringNode); str && len(s.Value) > 18 && allDigits(strings.TrimPrefix(s.Value, "-")) {
				w.errorf(path, "%s is too large", s.Value)
				return
			}
			w.errorf(path, "must be a whole number, not %s", describeNode(node))
			return
		}
		var v int64
		switch x := n.Value.(type) {
		case int64:
			v = x
		case uint64:
			if x > math.MaxInt64 {
				w.errorf(path, "%d is too large", x)
				return
			}
			v = int64(x)
		}
		if reflect.New(t).Elem().OverflowInt(v) {
			w.errorf(path, "%d is too large", v)
		}
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		n, ok := node.(*ast.IntegerNode)
		if !ok {
			w.errorf(path, "must be a whole number, not %s", describeNode(node))
			return
		}
		if x, neg := n.Value.(int64); neg && x < 0 {
			w.errorf(path, "must not be negative, got %d", x)
		}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		switch node.(type) {
		case *ast.IntegerNode, *ast.FloatNode:
		default:
			w.errorf(path, "must be a finite number, not %s", describeNode(node))
		}
	default:
		w.errorf(path, "cannot be decoded (unsupported Go type %s)", t)
	}
}

// build validates raw values and assembles the Scenario.
func (w *walker) build(raw *rawScenario) *Scenario {
	s := &Scenario{
		File:           w.file,
		Name:           raw.Name,
		Description:    raw.Description,
		Service:        raw.Service,
		Seed:           DefaultSeed,
		Duration:       raw.Duration,
		Ramp:           raw.Ramp,
		Settle:         DefaultSettle,
		StreamsPerConn: 1,
	}
	if !w.has("name") {
		base := filepath.Base(w.file)
		s.Name = strings.TrimSuffix(base, filepath.Ext(base))
	} else if strings.TrimSpace(raw.Name) == "" {
		w.errorf("name", "must not be empty (or leave it out to use the file name)")
	}
	serviceOK := false
	switch {
	case !w.has("service"):
		w.errorf("", "missing field service (one of chat, collab, game)")
	case raw.Service == Chat || raw.Service == Collab || raw.Service == Game:
		serviceOK = true
	default:
		w.errorf("service", "unknown service %q (known: chat, collab, game)", raw.Service)
	}
	if w.has("seed") {
		s.Seed = raw.Seed
	}
	durationOK := false
	switch {
	case !w.has("duration"):
		w.errorf("", "missing field duration (how long clients run, like \"30s\")")
	case raw.Duration <= 0:
		w.errorf("duration", "must be more than 0, got %s", raw.Duration)
	default:
		durationOK = true
	}
	if raw.Ramp < 0 {
		w.errorf("ramp", "must not be negative, got %s", raw.Ramp)
	} else if durationOK && raw.Ramp >= raw.Duration {
		w.errorf("ramp", "%s must be shorter than duration %s", raw.Ramp, raw.Duration)
	}
	if w.has("settle") {
		s.Settle = raw.Settle
		if raw.Settle < 0 {
			w.errorf("settle", "must not be negative, got %s", raw.Settle)
		}
	}
	if w.has("streams_per_connection") {
		s.StreamsPerConn = raw.StreamsPerConnection
		if raw.StreamsPerConnection < 1 || raw.StreamsPerConnection > MaxStreamsPerConnection {
			w.errorf("streams_per_connection", "must be between 1 and %d, got %d", MaxStreamsPerConnection, raw.StreamsPerConnection)
		}
	}

	// Roles.
	if !w.has("roles") {
		w.errorf("", "missing field roles (at least one group of clients)")
	} else if len(raw.Roles) == 0 {
		w.errorf("roles", "must list at least one role")
	}
	roleCount := map[string]int{}
	for i := range raw.Roles {
		path := fmt.Sprintf("roles[%d]", i)
		r := w.role(&raw.Roles[i], path, raw.Service, serviceOK, raw.Duration, durationOK)
		if r.Name != "" {
			if _, dup := roleCount[r.Name]; dup {
				w.errorf(path+".name", "duplicate role name %q; role names must be unique", r.Name)
			}
			roleCount[r.Name] = r.Count
		}
		s.Roles = append(s.Roles, r)
	}

	// Faults.
	for i := range raw.Faults {
		path := fmt.Sprintf("faults[%d]", i)
		if st, ok := w.faultStep(&raw.Faults[i], path, roleCount, raw.Duration, durationOK); ok {
			s.Faults = append(s.Faults, st)
		}
	}

	// Checks.
	if !w.has("checks") {
		w.errorf("", "missing field checks (list the checks to run, or write `checks: []` for a load-only run)")
	}
	for i, n := range raw.Checks {
		if c, ok := w.checkSpec(n, fmt.Sprintf("checks[%d]", i), s.Service); ok {
			s.Checks = append(s.Checks, c)
		}
	}

	// Thresholds: each one more check, after the listed ones.
	if w.has("thresholds") {
		w.thresholds(raw.Thresholds, s, durationOK)
	}
	return s
}

func (w *walker) role(raw *rawRole, path string, service string, serviceOK bool, dur time.Duration, durOK bool) Role {
	r := Role{Name: raw.Name, Count: raw.Count, Behaviour: raw.Behaviour, Start: raw.Start, Stop: raw.Stop}
	if !w.has(path + ".name") {
		w.errorf(path, "missing field name")
	} else if raw.Name == "" || strings.ContainsAny(raw.Name, " \t,") {
		w.errorf(path+".name", "%q is not a usable role name (non-empty, no spaces or commas)", raw.Name)
	}
	if !w.has(path + ".count") {
		w.errorf(path, "missing field count (how many clients play this role)")
	} else if raw.Count < 1 || raw.Count > MaxRoleCount {
		w.errorf(path+".count", "must be between 1 and %d, got %d", MaxRoleCount, raw.Count)
	}

	// Behaviour.
	var beh Behaviour
	behOK := false
	if !w.has(path + ".behaviour") {
		w.errorf(path, "missing field behaviour (one of: %s)", strings.Join(behaviourNames(""), ", "))
	} else if b, ok := LookupBehaviour(raw.Behaviour); !ok {
		w.errorf(path+".behaviour", "unknown behaviour %q%s (known: %s)", raw.Behaviour, suggest(raw.Behaviour, behaviourNames("")), strings.Join(behaviourNames(""), ", "))
	} else if serviceOK && b.Service != "" && b.Service != service {
		w.errorf(path+".behaviour", "behaviour %q is for %s scenarios, not %s (for %s: %s)", b.Name, b.Service, service, service, strings.Join(behaviourNames(service), ", "))
	} else {
		beh, behOK = b, true
	}

	// Rate.
	if raw.Rate != nil {
		rate, err := parseRate(unwrap(raw.Rate))
		if err != nil {
			w.errorf(path+".rate", "%v", err)
		}
		r.Rate = rate
	} else if behOK {
		r.Rate = beh.DefaultRate
	}

	// Scopes, spelled per service.
	r.Scopes = 1
	if serviceOK {
		want := scopeKey[service]
		for svc, key := range scopeKey {
			if key != want && w.has(path+"."+key) {
				w.errorf(path+"."+key, "%s is how %s scenarios spread clients; a %s scenario uses %s:", key, svc, service, want)
			}
		}
		var n int
		switch service {
		case Chat:
			n = raw.Rooms
		case Collab:
			n = raw.Documents
		case Game:
			n = raw.Matches
		}
		if w.has(path + "." + want) {
			r.Scopes = n
			if n < 1 || n > MaxRoleCount {
				w.errorf(path+"."+want, "must be between 1 and %d, got %d", MaxRoleCount, n)
			}
		}
		r.ScopePrefix = defaultScopePrefix[service]
	}
	if w.has(path + ".scope_prefix") {
		r.ScopePrefix = raw.ScopePrefix
		if !validPrefix(raw.ScopePrefix) {
			w.errorf(path+".scope_prefix", "%q is not a usable prefix (letters, digits, '-', '_' only)", raw.ScopePrefix)
		}
	}

	// Active window.
	if raw.Start < 0 {
		w.errorf(path+".start", "must not be negative, got %s", raw.Start)
	} else if durOK && raw.Start >= dur {
		w.errorf(path+".start", "%s is not before the end of the run (duration %s)", raw.Start, dur)
	}
	if w.has(path + ".stop") {
		switch {
		case raw.Stop <= raw.Start:
			w.errorf(path+".stop", "%s must be after start %s", raw.Stop, raw.Start)
		case durOK && raw.Stop > dur:
			w.errorf(path+".stop", "%s is after the end of the run (duration %s)", raw.Stop, dur)
		}
	}

	// Params.
	if behOK {
		params := beh.Params()
		dec := decoderFor(w.file, raw.Params, path+".params", w.keys)
		if err := dec(params); err != nil {
			w.add(err)
		} else {
			w.validateParams(params, path, r)
		}
		r.Params = params
	}
	return r
}

func (w *walker) add(err error) {
	if len(w.errs) < maxErrors {
		w.errs = append(w.errs, err)
	}
}

// validateParams checks a behaviour's decoded params through their own
// CheckParams (ParamsChecker), then their Validate method when they have one.
func (w *walker) validateParams(params any, path string, r Role) {
	pp := path + ".params"
	pc := &ParamsCheck{Role: r, File: w.file, Bad: func(field, format string, args ...any) {
		fp := pp + "." + field
		if !w.has(fp) {
			fp = pp // a default is wrong only relative to the role (rooms)
			if !w.has(pp) {
				fp = path
			}
		}
		w.errorf(fp, format, args...)
	}}
	if c, ok := params.(ParamsChecker); ok {
		c.CheckParams(pc)
	}
	if v, ok := params.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			w.errorf(pp, "%v", err)
		}
	}
}

func (w *walker) faultStep(raw *rawFault, path string, roles map[string]int, dur time.Duration, durOK bool) (FaultStep, bool) {
	line, _ := w.at(path)
	st := FaultStep{Fault: raw.Fault, At: raw.At, Every: raw.Every, Until: raw.Until,
		Roles: raw.Roles, Fraction: raw.Fraction, Count: raw.Count, Probability: 1, Line: line}
	ok := true
	fail := func(p, format string, args ...any) {
		w.errorf(p, format, args...)
		ok = false
	}
	var spec fault.Spec
	if !w.has(path + ".fault") {
		fail(path, "missing field fault (one of: %s)", strings.Join(fault.Names(), ", "))
	} else if s, found := fault.Lookup(raw.Fault); !found {
		fail(path+".fault", "unknown fault %q%s (known: %s)", raw.Fault, suggest(raw.Fault, fault.Names()), strings.Join(fault.Names(), ", "))
	} else {
		spec = s
		st.Kind = s
	}

	// Schedule.
	if !w.has(path + ".at") {
		fail(path, "missing field at (when the fault first fires, like \"10s\"; \"0s\" for the start)")
	} else if raw.At < 0 {
		fail(path+".at", "must not be negative, got %s", raw.At)
	} else if durOK && raw.At >= dur {
		fail(path+".at", "%s is not before the end of the run (duration %s)", raw.At, dur)
	}
	if w.has(path + ".every") {
		if raw.Every <= 0 {
			fail(path+".every", "must be more than 0, got %s", raw.Every)
		}
	}
	if w.has(path + ".until") {
		switch {
		case !w.has(path + ".every"):
			fail(path+".until", "only means something with every (a repeating fault)")
		case raw.Until <= raw.At:
			fail(path+".until", "%s must be after at %s", raw.Until, raw.At)
		case durOK && raw.Until > dur:
			fail(path+".until", "%s is after the end of the run (duration %s)", raw.Until, dur)
		}
	}
	if w.has(path + ".probability") {
		st.Probability = raw.Probability
		if !(raw.Probability >= 0 && raw.Probability <= 1) {
			fail(path+".probability", "must be between 0 and 1, got %v", raw.Probability)
		}
	}

	// Targets.
	targeted := spec.Name == "" || spec.Scope == fault.Stream
	if !targeted {
		kind := "connection"
		if spec.Scope == fault.ServerProcess {
			kind = "server"
		}
		for _, k := range []string{"roles", "fraction", "count"} {
			if w.has(path + "." + k) {
				fail(path+"."+k, "%s is a %s fault and acts on the whole run, not on chosen clients; remove %s", spec.Name, kind, k)
			}
		}
	}
	seen := map[string]bool{}
	candidates := 0
	for i, name := range raw.Roles {
		rp := fmt.Sprintf("%s.roles[%d]", path, i)
		n, found := roles[name]
		switch {
		case !found:
			fail(rp, "unknown role %q (roles: %s)", name, strings.Join(sortedKeys(roles), ", "))
		case seen[name]:
			fail(rp, "role %q is listed twice", name)
		default:
			candidates += n
		}
		seen[name] = true
	}
	if len(raw.Roles) == 0 {
		for _, n := range roles {
			candidates += n
		}
	}
	if w.has(path+".fraction") && w.has(path+".count") {
		fail(path+".count", "give fraction or count, not both")
	}
	if w.has(path + ".fraction") {
		if !(raw.Fraction > 0 && raw.Fraction <= 1) {
			fail(path+".fraction", "must be more than 0 and at most 1, got %v", raw.Fraction)
		}
	}
	if w.has(path + ".count") {
		if raw.Count < 1 {
			fail(path+".count", "must be at least 1, got %d", raw.Count)
		} else if ok && candidates > 0 && raw.Count > candidates {
			fail(path+".count", "%d is more than the %d candidate clients", raw.Count, candidates)
		}
	}

	// Params: decoded now to validate, and again for every New.
	if spec.Name != "" {
		called := false
		dec := decoderFor(w.file, raw.Params, path+".params", w.keys)
		probe := func(into any) error { called = true; return dec(into) }
		if _, _, err := fault.New(spec.Name, probe); err != nil {
			w.add(w.located(err, path+".params", path))
			ok = false
		} else if !called && hasValue(raw.Params) {
			fail(path+".params", "fault %s takes no params", spec.Name)
		}
		name, node, file := spec.Name, raw.Params, w.file
		st.New = func() (fault.Fault, error) {
			f, _, err := fault.New(name, decoderFor(file, node, path+".params", nil))
			return f, err
		}
	}
	return st, ok
}

func (w *walker) checkSpec(n ast.Node, path string, service string) (CheckSpec, bool) {
	n = unwrap(n)
	line, _ := w.at(path)
	var name string
	var params ast.Node
	paramPath := path
	switch v := n.(type) {
	case *ast.StringNode:
		name = v.Value
	default:
		pairs, ok := mapPairs(n)
		if !ok || len(pairs) != 1 {
			w.errorf(path, "must be a check name (like total-order) or one `name: {params}` mapping, not %s", describeNode(n))
			return CheckSpec{}, false
		}
		name = keyText(pairs[0].Key)
		params = pairs[0].Value
		paramPath = joinPath(path, name)
		w.keys[paramPath] = pairs[0].Key
	}
	if _, found := check.Lookup(name); !found {
		w.errorf(paramPath, "unknown check %q%s (known: %s)", name, suggest(name, check.Names()), strings.Join(check.Names(), ", "))
		return CheckSpec{}, false
	}
	called := false
	dec := decoderFor(w.file, params, paramPath, w.keys)
	probe := func(into any) error { called = true; return dec(into) }
	if _, err := check.New(name, probe); err != nil {
		w.add(w.located(err, paramPath, paramPath))
		return CheckSpec{}, false
	}
	if !called && hasValue(params) {
		w.errorf(paramPath, "check %s takes no params", name)
		return CheckSpec{}, false
	}
	file := w.file
	return CheckSpec{Name: name, Line: line, New: func() (check.Checker, error) {
		c, err := check.New(name, decoderFor(file, params, paramPath, nil))
		if sa, ok := c.(check.ServiceAware); ok && err == nil {
			sa.SetService(service)
		}
		return c, err
	}}, true
}

// located returns err as an *Error: itself when it is one, the located
// error's place with the whole wrapped message when a factory wrapped one,
// or at path (falling back to alt) for a factory's own validation message.
func (w *walker) located(err error, path, alt string) error {
	var e *Error
	if errors.As(err, &e) {
		if err == error(e) {
			return e
		}
		c := *e
		c.Msg = strings.Replace(err.Error(), e.Error(), e.Msg, 1)
		return &c
	}
	p := path
	var pe *fault.ParamError
	if errors.As(err, &pe) && pe.Param != "" && w.has(joinPath(path, pe.Param)) {
		p = joinPath(path, pe.Param)
	}
	if !w.has(p) {
		if _, ok := w.vals[p]; !ok {
			p = alt
		}
	}
	line, col := w.at(p)
	return &Error{File: w.file, Line: line, Col: col, Path: p, Msg: err.Error()}
}

// decoderFor returns a strict decode function for node, the kind a check or
// fault factory receives: nil or null node leaves defaults; otherwise the
// node is shape-checked against the target type and decoded, and the first
// problem is returned as an *Error under path. Each call decodes afresh.
// When keys is non-nil the visited key nodes are added to it (for later
// messages about the same params).
func decoderFor(file string, node ast.Node, path string, keys map[string]ast.Node) func(into any) error {
	return func(into any) error {
		if !hasValue(node) {
			return nil
		}
		rv := reflect.ValueOf(into)
		if rv.Kind() != reflect.Ptr || rv.IsNil() {
			return fmt.Errorf("decode: need a non-nil pointer, got %T", into)
		}
		w := newWalker(file)
		w.shape(node, rv.Type().Elem(), path)
		if keys != nil {
			for k, v := range w.keys {
				keys[k] = v
			}
		}
		if len(w.errs) > 0 {
			return w.errs[0]
		}
		if err := yaml.NodeToValue(unwrap(node), into, yaml.Strict()); err != nil {
			return w.convert(err, path)
		}
		return nil
	}
}

// parseRate reads a rate: a number (per second) or "N/unit" with unit s, m,
// min, h or a duration ("1/10s").
func parseRate(n ast.Node) (float64, error) {
	const forms = `write a number per second (2, 0.5) or "N/s", "N/m", "N/h", "N/10s"`
	var v float64
	switch x := n.(type) {
	case *ast.IntegerNode:
		switch i := x.Value.(type) {
		case int64:
			v = float64(i)
		case uint64:
			v = float64(i)
		}
	case *ast.FloatNode:
		v = x.Value
	case *ast.StringNode:
		num, unit, found := strings.Cut(strings.TrimSpace(x.Value), "/")
		if !found {
			return 0, fmt.Errorf("%q is not a rate; %s", x.Value, forms)
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a rate: %q is not a number; %s", x.Value, num, forms)
		}
		var per time.Duration
		switch u := strings.TrimSpace(unit); u {
		case "s", "sec":
			per = time.Second
		case "m", "min":
			per = time.Minute
		case "h":
			per = time.Hour
		default:
			d, err := time.ParseDuration(u)
			if err != nil || d <= 0 {
				return 0, fmt.Errorf("%q is not a rate: unknown unit %q; %s", x.Value, u, forms)
			}
			per = d
		}
		v = f / per.Seconds()
	default:
		return 0, fmt.Errorf("must be a rate, not %s; %s", describeNode(n), forms)
	}
	if !(v > 0) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("must be more than 0, got %v per second", v)
	}
	if v > MaxRate {
		return 0, fmt.Errorf("%v per second is over the limit of %v per client", v, MaxRate)
	}
	return v, nil
}

// --- small helpers ---

func unwrap(n ast.Node) ast.Node {
	for {
		switch x := n.(type) {
		case *ast.TagNode:
			n = x.Value
		case *ast.AnchorNode:
			n = x.Value
		case *ast.DocumentNode:
			n = x.Body
		default:
			return n
		}
	}
}

func hasValue(n ast.Node) bool {
	n = unwrap(n)
	if n == nil {
		return false
	}
	_, null := n.(*ast.NullNode)
	return !null
}

func mapPairs(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}, true
	}
	return nil, false
}

func keyText(k ast.MapKeyNode) string {
	if s, ok := unwrap(k).(*ast.StringNode); ok {
		return s.Value
	}
	return k.String()
}

func nodePos(n ast.Node) (int, int) {
	n = unwrap(n)
	if pairs, ok := mapPairs(n); ok && len(pairs) > 0 {
		if m, flow := n.(*ast.MappingNode); !flow || !m.IsFlowStyle {
			return nodePos(pairs[0].Key)
		}
	}
	if n == nil || n.GetToken() == nil {
		return 1, 1
	}
	p := n.GetToken().Position
	return p.Line, p.Column
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndex(p, "["); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}

func fieldName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

func fieldMap(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("yaml") == "-" {
			continue
		}
		m[fieldName(f)] = f.Type
	}
	return m
}

func fieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("yaml") == "-" {
			continue
		}
		out = append(out, fieldName(f))
	}
	if len(out) == 0 {
		out = []string{"(no fields)"}
	}
	return out
}

func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration like \"30s\""
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		return "a mapping"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.String:
		return "text"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	default:
		return "a whole number"
	}
}

func describeNode(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode:
		return "nothing"
	case *ast.StringNode:
		return strconv.Quote(n.(*ast.StringNode).Value)
	case *ast.NanNode, *ast.InfinityNode:
		return n.String() + " (not finite)"
	}
	return n.String()
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validPrefix(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func behaviourNames(service string) []string { return BehaviourNames(service) }

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// suggest returns `; did you mean "x"?` for the closest known name within a
// small edit distance, or "".
func suggest(got string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(got), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
