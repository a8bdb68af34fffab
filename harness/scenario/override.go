package scenario

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/bidikit/bidikit/internal/strictyaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Override is one `--set KEY=VALUE`: VALUE (one line of YAML: a scalar, or
// a flow collection like [a, b] or {k: v}) put at KEY in a scenario's YAML
// tree before the tree is decoded, so the file's own strict checks judge
// it. KEY is a dotted path of the file's keys:
//
//	duration, ramp, seed, settle, streams_per_connection
//	roles.NAME.FIELD            a role by its name; roles.*.FIELD is every role
//	roles.NAME.params.KEY
//	faults[I].FIELD             a fault by its index (0-based) ...
//	faults.NAME.FIELD           ... or by its fault name when only one has it
//	checks.NAME.PARAM           a listed check's parameter (a bare `- leaks`
//	                            becomes `- leaks: {PARAM: VALUE}`)
//	thresholds.ROLE.METRIC
//
// A key missing from the file is added (a missing mapping on the way is
// created); a list entry must exist. Overrides are values: they hold no
// state and may be applied to many scenarios.
type Override struct {
	Key, Value string
	steps      []string // Key split at dots, "[I]" as steps of their own
}

// overrideKeyRE is one dotted step with optional [I] indexes.
var overrideKeyRE = regexp.MustCompile(`^([^.\[\]\s]+|\*)((\[[0-9]+\])*)$`)

// indexRE is one [I] of a step.
var indexRE = regexp.MustCompile(`\[[0-9]+\]`)

// ParseOverride reads "KEY=VALUE". It checks the form only (a key of dotted
// names, a value of one line of YAML); what the key names is checked
// against each scenario by Apply.
func ParseOverride(arg string) (Override, error) {
	key, value, ok := strings.Cut(arg, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return Override{}, fmt.Errorf("--set %s: want KEY=VALUE, e.g. duration=10s or roles.honest.count=50", arg)
	}
	o := Override{Key: key, Value: value}
	for _, part := range strings.Split(key, ".") {
		m := overrideKeyRE.FindStringSubmatch(part)
		if m == nil {
			return Override{}, fmt.Errorf("--set %s: key %q: each dotted part must be a name, optionally with [index] (like faults[0].at)", arg, key)
		}
		o.steps = append(o.steps, m[1])
		for _, ix := range indexRE.FindAllString(m[2], -1) {
			o.steps = append(o.steps, ix)
		}
	}
	if strings.TrimSpace(value) == "" {
		return Override{}, fmt.Errorf("--set %s: the value is empty (an unset shell variable?); give a value, or null for none", arg)
	}
	if strings.ContainsAny(value, "\n\r") {
		return Override{}, fmt.Errorf("--set %s: the value must be one line; write a list as [a, b] and a mapping as {k: v}", o.Key)
	}
	if _, err := o.valueNode(); err != nil {
		return Override{}, err
	}
	return o, nil
}

// String is the override as given: "KEY=VALUE".
func (o Override) String() string { return o.Key + "=" + o.Value }

// valueNode parses Value into a fresh node (each use gets its own: nodes
// are placed in one tree only).
func (o Override) valueNode() (ast.Node, error) {
	f, err := parser.ParseBytes([]byte(o.Value), 0)
	if err != nil {
		var msg string
		if ye := strictyaml.SyntaxError("", err); ye != nil {
			var e *Error
			if errors.As(ye, &e) {
				msg = e.Msg
			}
		}
		return nil, fmt.Errorf("--set %s: the value is not YAML: %s", o, msg)
	}
	if len(f.Docs) != 1 || f.Docs[0].Body == nil {
		return nullNode()
	}
	n := f.Docs[0].Body
	switch v := strictyaml.Unwrap(n).(type) {
	case *ast.MappingNode:
		if !v.IsFlowStyle {
			return nil, fmt.Errorf("--set %s: write a mapping in flow style, like {rooms_per_client: 2}", o)
		}
	case *ast.MappingValueNode:
		return nil, fmt.Errorf("--set %s: the value reads as a mapping (it has \": \"): quote it if it is text, or write a mapping in flow style, like {rooms_per_client: 2}", o)
	case *ast.SequenceNode:
		if !v.IsFlowStyle {
			return nil, fmt.Errorf("--set %s: write a list in flow style, like [a, b]", o)
		}
	}
	return n, nil
}

// nullNode is a fresh YAML null.
func nullNode() (ast.Node, error) {
	f, err := parser.ParseBytes([]byte("null"), 0)
	if err != nil {
		return nil, err
	}
	return f.Docs[0].Body, nil
}

// Apply parses one scenario file's contents as Parse does, with every
// override put into its YAML tree first, in order, so a later one wins. It
// returns the scenario, whose Source is the YAML it stands for (the file
// with the overrides in it, for --raw-out), which Parse reads to the same
// scenario.
// A key that names nothing in the file (an unknown role, check or fault,
// an index past a list's end, a field below a plain value) is an error
// naming the --set and what the file has instead; a value the file's checks
// refuse is the file's own message, naming the --set; any other problem the
// overrides caused (a fault now after the run's end) names them all.
func Apply(file string, data []byte, overrides []Override) (*Scenario, error) {
	if len(overrides) == 0 {
		return Parse(file, data)
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, strictyaml.SyntaxError(file, err)
	}
	var doc *ast.DocumentNode
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			if doc != nil {
				// Parse says why.
				_, err := Parse(file, data)
				return nil, err
			}
			doc = d
		}
	}
	if doc == nil {
		_, err := Parse(file, data)
		return nil, err
	}
	placed := map[string]Override{} // field path -> the override put there
	for _, o := range overrides {
		if len(o.steps) == 0 {
			if o, err = ParseOverride(o.String()); err != nil {
				return nil, err
			}
		}
		a := &applier{o: o, placed: placed}
		body, err := a.set(doc.Body, 0, "")
		if err != nil {
			return nil, &Error{File: file, Path: "--set " + o.String(), Msg: err.Error()}
		}
		doc.Body = body
	}
	// The tree itself is decoded, so positions in messages (and the
	// scenario's Line fields) are the file's.
	s, err := newWalker(file).scenario(doc.Body)
	if err != nil {
		return nil, blameOverrides(err, placed, overrides)
	}
	out := []byte(f.String())
	if again, err := Parse(file, out); err != nil || again.Name != s.Name || again.Duration != s.Duration || len(again.Roles) != len(s.Roles) {
		return nil, fmt.Errorf("%s: the scenario with %s does not read back from its YAML (a bidikit bug, please report it): %v", file, listOverrides(overrides), err)
	}
	s.Source = out
	return s, nil
}

// blameOverrides rewrites the walker's errors: one at or below a path an
// override was put at names that override (its position is the value's,
// not the file's); any other error says which overrides were applied.
func blameOverrides(err error, placed map[string]Override, all []Override) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		var se *Error
		if !errors.As(e, &se) {
			out = append(out, e)
			continue
		}
		c := *se
		if o, path, ok := placedAt(c.Path, placed); ok {
			c.Line, c.Col = 0, 0
			c.Msg = c.Path + ": " + c.Msg
			c.Path = "--set " + o.String()
			_ = path
		} else {
			c.Msg += " (with " + listOverrides(all) + ")"
		}
		out = append(out, &c)
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}

// placedAt finds the override whose value holds path.
func placedAt(path string, placed map[string]Override) (Override, string, bool) {
	for p := path; ; p = strictyaml.ParentPath(p) {
		if o, ok := placed[p]; ok {
			return o, p, true
		}
		if p == "" {
			return Override{}, "", false
		}
	}
}

// listOverrides is "--set a=1 --set b=2".
func listOverrides(os []Override) string {
	parts := make([]string, len(os))
	for i, o := range os {
		parts[i] = "--set " + o.String()
	}
	return strings.Join(parts, " ")
}

// applier puts one override into one tree.
type applier struct {
	o      Override
	placed map[string]Override
}

// set returns n with the override's steps from i on applied below it;
// where is n's field path as the walker spells it ("roles[1].params").
func (a *applier) set(n ast.Node, i int, where string) (ast.Node, error) {
	if i == len(a.o.steps) {
		a.placed[where] = a.o
		return a.o.valueNode()
	}
	step := a.o.steps[i]
	inner := strictyaml.Unwrap(n)
	if !strictyaml.HasValue(inner) {
		if isIndex(step) || step == "*" || isNamedList(where) {
			return nil, fmt.Errorf("%s has no entries", orTop(where))
		}
		return a.build(i, where)
	}
	switch v := inner.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return a.setInMapping(n, v, i, where)
	case *ast.SequenceNode:
		return n, a.setInList(v, i, where)
	}
	return nil, fmt.Errorf("%s is %s, not a mapping: it has no %q", orTop(where), strictyaml.DescribeNode(inner), step)
}

// setInMapping sets the step's key of m (replacing its value or adding
// it); n is m as found in the tree (it may be wrapped).
func (a *applier) setInMapping(n ast.Node, m ast.Node, i int, where string) (ast.Node, error) {
	step := a.o.steps[i]
	if isIndex(step) || step == "*" {
		return nil, fmt.Errorf("%s is a mapping, not a list: %s does not apply", orTop(where), step)
	}
	pairs, _ := strictyaml.MapPairs(m)
	for _, kv := range pairs {
		if strictyaml.KeyText(kv.Key) != step {
			continue
		}
		v, err := a.set(kv.Value, i+1, strictyaml.JoinPath(where, step))
		if err != nil {
			return nil, err
		}
		kv.Value = v
		return n, nil
	}
	// A new key: take it from a parsed one-pair mapping, at the column of
	// the mapping's own keys so the tree prints back the same.
	value, err := a.build(i+1, strictyaml.JoinPath(where, step))
	if err != nil {
		return nil, err
	}
	kv, err := newPair(step, value)
	if err != nil {
		return nil, err
	}
	switch mm := m.(type) {
	case *ast.MappingNode:
		if len(mm.Values) > 0 {
			kv.AddColumn(mm.Values[0].Key.GetToken().Position.Column - kv.Key.GetToken().Position.Column)
		}
		kv.IsFlowStyle = mm.IsFlowStyle
		mm.Values = append(mm.Values, kv)
		return n, nil
	case *ast.MappingValueNode:
		// A one-pair mapping parsed as its pair: make it a mapping of two.
		both, err := parser.ParseBytes([]byte("{a: 1, b: 2}"), 0)
		if err != nil {
			return nil, err
		}
		mapping := both.Docs[0].Body.(*ast.MappingNode)
		kv.IsFlowStyle = mm.IsFlowStyle
		mapping.IsFlowStyle = mm.IsFlowStyle
		kv.AddColumn(mm.Key.GetToken().Position.Column - kv.Key.GetToken().Position.Column)
		mapping.Values = []*ast.MappingValueNode{mm, kv}
		if mapping.IsFlowStyle {
			return mapping, nil
		}
		return a.reparse(mapping)
	}
	return nil, fmt.Errorf("%s: cannot add %q", orTop(where), step)
}

// reparse prints n and parses it again, so that every token's position is
// consistent for printing (used where a block mapping was assembled).
func (a *applier) reparse(n ast.Node) (ast.Node, error) {
	f, err := parser.ParseBytes([]byte(n.String()), 0)
	if err != nil || len(f.Docs) != 1 {
		return nil, fmt.Errorf("cannot add %q here", a.o.Key)
	}
	return f.Docs[0].Body, nil
}

// setInList applies the step to the entries of a list it selects: roles
// by name (or * for all), faults by index or fault name, checks by name,
// any list by [I].
func (a *applier) setInList(seq *ast.SequenceNode, i int, where string) error {
	step := a.o.steps[i]
	if isIndex(step) {
		ix, _ := strconv.Atoi(strings.Trim(step, "[]"))
		if ix >= len(seq.Values) {
			return fmt.Errorf("%s has %d entries (%s[0]..%s[%d]): there is no %s", where, len(seq.Values), where, where, len(seq.Values)-1, step)
		}
		v, err := a.set(seq.Values[ix], i+1, fmt.Sprintf("%s[%d]", where, ix))
		if err != nil {
			return err
		}
		seq.Values[ix] = v
		return nil
	}
	switch where {
	case "roles":
		return a.setRoles(seq, i)
	case "faults":
		return a.setFault(seq, i)
	case "checks":
		return a.setCheck(seq, i)
	}
	return fmt.Errorf("%s is a list: address an entry as %s[I], not %q", where, where, step)
}

// setRoles applies the rest of the key to the role named by the step, or
// to every role for "*".
func (a *applier) setRoles(seq *ast.SequenceNode, i int) error {
	step := a.o.steps[i]
	var names []string
	found := false
	for ix, e := range seq.Values {
		name := entryField(e, "name")
		names = append(names, name)
		if step != "*" && name != step {
			continue
		}
		found = true
		v, err := a.set(e, i+1, fmt.Sprintf("roles[%d]", ix))
		if err != nil {
			return err
		}
		seq.Values[ix] = v
	}
	if !found {
		return fmt.Errorf("no role %q%s (roles: %s)", step, strictyaml.Suggest(step, names), strings.Join(names, ", "))
	}
	return nil
}

// setFault applies the rest of the key to the one fault of the step's name.
func (a *applier) setFault(seq *ast.SequenceNode, i int) error {
	step := a.o.steps[i]
	var names []string
	match := -1
	for ix, e := range seq.Values {
		name := entryField(e, "fault")
		names = append(names, fmt.Sprintf("[%d] %s", ix, name))
		if name != step {
			continue
		}
		if match >= 0 {
			return fmt.Errorf("faults[%d] and faults[%d] are both %s: address one as faults[I] (faults: %s)", match, ix, step, strings.Join(names, ", "))
		}
		match = ix
	}
	if match < 0 {
		for ix := len(names); ix < len(seq.Values); ix++ {
			names = append(names, fmt.Sprintf("[%d] %s", ix, entryField(seq.Values[ix], "fault")))
		}
		return fmt.Errorf("no fault %q (faults: %s)", step, orNone(names))
	}
	v, err := a.set(seq.Values[match], i+1, fmt.Sprintf("faults[%d]", match))
	if err != nil {
		return err
	}
	seq.Values[match] = v
	return nil
}

// setCheck applies the rest of the key to the listed check of the step's
// name: a bare `- name` entry becomes `- name: {...}`.
func (a *applier) setCheck(seq *ast.SequenceNode, i int) error {
	step := a.o.steps[i]
	var names []string
	for ix, e := range seq.Values {
		inner := strictyaml.Unwrap(e)
		path := fmt.Sprintf("checks[%d]", ix)
		switch v := inner.(type) {
		case *ast.StringNode:
			names = append(names, v.Value)
			if v.Value != step {
				continue
			}
			params, err := a.build(i+1, strictyaml.JoinPath(path, step))
			if err != nil {
				return err
			}
			kv, err := newPair(step, params)
			if err != nil {
				return err
			}
			kv.IsFlowStyle = true
			m, err := flowMapping(kv)
			if err != nil {
				return err
			}
			seq.Values[ix] = m
			return nil
		default:
			pairs, ok := strictyaml.MapPairs(inner)
			if !ok || len(pairs) != 1 {
				continue
			}
			name := strictyaml.KeyText(pairs[0].Key)
			names = append(names, name)
			if name != step {
				continue
			}
			_, err := a.setInMapping(e, inner, i, path)
			return err
		}
	}
	return fmt.Errorf("no check %q in checks%s (checks: %s)", step, strictyaml.Suggest(step, names), orNone(names))
}

// build makes the value for steps i.. of a key missing from the file: the
// override's value, inside new mappings for the steps left.
func (a *applier) build(i int, where string) (ast.Node, error) {
	a.placed[where] = a.o // a problem with what is built here is the override's
	if i == len(a.o.steps) {
		return a.o.valueNode()
	}
	step := a.o.steps[i]
	if isIndex(step) || step == "*" || isNamedList(where) {
		return nil, fmt.Errorf("%s is not in the file, so it has no entry %s", orTop(where), step)
	}
	inner, err := a.build(i+1, strictyaml.JoinPath(where, step))
	if err != nil {
		return nil, err
	}
	kv, err := newPair(step, inner)
	if err != nil {
		return nil, err
	}
	kv.IsFlowStyle = true
	return flowMapping(kv)
}

// newPair is a fresh `key: value` pair; the key is printed plain when it
// needs no quotes (a field, role or check name), else quoted.
func newPair(key string, value ast.Node) (*ast.MappingValueNode, error) {
	text := key
	if !plainKeyRE.MatchString(key) {
		text = strconv.Quote(key)
	}
	f, err := parser.ParseBytes([]byte(text+": null"), 0)
	if err != nil || len(f.Docs) != 1 {
		return nil, fmt.Errorf("cannot make a key %q", key)
	}
	var kv *ast.MappingValueNode
	switch b := f.Docs[0].Body.(type) {
	case *ast.MappingValueNode:
		kv = b
	case *ast.MappingNode:
		if len(b.Values) == 1 {
			kv = b.Values[0]
		}
	}
	if kv == nil {
		return nil, fmt.Errorf("cannot make a key %q", key)
	}
	kv.Value = value
	return kv, nil
}

// plainKeyRE matches keys printed without quotes.
var plainKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// flowMapping is a fresh flow mapping {kv}.
func flowMapping(kv *ast.MappingValueNode) (ast.Node, error) {
	f, err := parser.ParseBytes([]byte("{a: 1}"), 0)
	if err != nil {
		return nil, err
	}
	m, ok := f.Docs[0].Body.(*ast.MappingNode)
	if !ok {
		return nil, errors.New("cannot make a flow mapping")
	}
	m.Values = []*ast.MappingValueNode{kv}
	return m, nil
}

// entryField is a list entry's text field key ("" when it has none).
func entryField(e ast.Node, key string) string {
	pairs, _ := strictyaml.MapPairs(strictyaml.Unwrap(e))
	for _, kv := range pairs {
		if strictyaml.KeyText(kv.Key) == key {
			if s, ok := strictyaml.Unwrap(kv.Value).(*ast.StringNode); ok {
				return s.Value
			}
			return kv.Value.String()
		}
	}
	return ""
}

// isIndex reports whether step is "[I]".
func isIndex(step string) bool { return strings.HasPrefix(step, "[") }

// isNamedList reports whether the field at where is a list whose entries
// keys address by name.
func isNamedList(where string) bool {
	return where == "roles" || where == "faults" || where == "checks"
}

// orTop names the field at where, "the scenario" for the top.
func orTop(where string) string {
	if where == "" {
		return "the scenario"
	}
	return where
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
