package scenario

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/internal/strictyaml"
)

// faultStep and checkSpec turn a scenario's faults: and checks: entries into
// steps built by the fault and check registries.

func (w *walker) faultStep(raw *rawFault, path string, roles map[string]int, dur time.Duration, durOK bool) (FaultStep, bool) {
	line, _ := w.At(path)
	st := FaultStep{Fault: raw.Fault, At: raw.At, Every: raw.Every, Until: raw.Until,
		Roles: raw.Roles, Fraction: raw.Fraction, Count: raw.Count, Probability: 1, Line: line}
	ok := true
	fail := func(p, format string, args ...any) {
		w.Errorf(p, format, args...)
		ok = false
	}
	var spec fault.Spec
	if !w.Has(path + ".fault") {
		fail(path, "missing field fault (one of: %s)", strings.Join(fault.Names(), ", "))
	} else if s, found := fault.Lookup(raw.Fault); !found {
		fail(path+".fault", "unknown fault %q%s (known: %s)", raw.Fault, strictyaml.Suggest(raw.Fault, fault.Names()), strings.Join(fault.Names(), ", "))
	} else {
		spec = s
		st.Scope = s.Scope
	}

	w.faultSchedule(raw, path, dur, durOK, &st, fail)
	w.faultTargets(raw, path, spec, roles, fail, &ok)
	if spec.Name != "" {
		w.faultParams(raw, path, spec, &st, &ok)
	}
	return st, ok
}

// faultSchedule checks when a fault step fires (at, every, until,
// probability), reporting problems through fail.
func (w *walker) faultSchedule(raw *rawFault, path string, dur time.Duration, durOK bool, st *FaultStep, fail func(p, format string, args ...any)) {
	if !w.Has(path + ".at") {
		fail(path, "missing field at (when the fault first fires, like \"10s\"; \"0s\" for the start)")
	} else if raw.At < 0 {
		fail(path+".at", "must not be negative, got %s", raw.At)
	} else if durOK && raw.At >= dur {
		fail(path+".at", "%s is not before the end of the run (duration %s)", raw.At, dur)
	}
	if w.Has(path + ".every") {
		if raw.Every <= 0 {
			fail(path+".every", "must be more than 0, got %s", raw.Every)
		}
	}
	if w.Has(path + ".until") {
		switch {
		case !w.Has(path + ".every"):
			fail(path+".until", "only means something with every (a repeating fault)")
		case raw.Until <= raw.At:
			fail(path+".until", "%s must be after at %s", raw.Until, raw.At)
		case durOK && raw.Until > dur:
			fail(path+".until", "%s is after the end of the run (duration %s)", raw.Until, dur)
		}
	}
	if w.Has(path + ".probability") {
		st.Probability = raw.Probability
		if !(raw.Probability >= 0 && raw.Probability <= 1) {
			fail(path+".probability", "must be between 0 and 1, got %v", raw.Probability)
		}
	}

}

// faultTargets checks which clients a fault step chooses (roles, fraction,
// count); a connection or server fault chooses none. ok is cleared on a
// problem found.
func (w *walker) faultTargets(raw *rawFault, path string, spec fault.Spec, roles map[string]int, fail func(p, format string, args ...any), ok *bool) {
	targeted := spec.Name == "" || spec.Scope == fault.Stream
	if !targeted {
		kind := "connection"
		if spec.Scope == fault.ServerProcess {
			kind = "server"
		}
		for _, k := range []string{"roles", "fraction", "count"} {
			if w.Has(path + "." + k) {
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
	if w.Has(path+".fraction") && w.Has(path+".count") {
		fail(path+".count", "give fraction or count, not both")
	}
	if w.Has(path + ".fraction") {
		if !(raw.Fraction > 0 && raw.Fraction <= 1) {
			fail(path+".fraction", "must be more than 0 and at most 1, got %v", raw.Fraction)
		}
	}
	if w.Has(path + ".count") {
		if raw.Count < 1 {
			fail(path+".count", "must be at least 1, got %d", raw.Count)
		} else if *ok && candidates > 0 && raw.Count > candidates {
			fail(path+".count", "%d is more than the %d candidate clients", raw.Count, candidates)
		}
	}

}

// faultParams decodes a fault step's params now, to validate them, and
// keeps them in st.Params (plain data: FaultStep.New decodes them again
// for every firing).
func (w *walker) faultParams(raw *rawFault, path string, spec fault.Spec, st *FaultStep, ok *bool) {
	called := false
	dec := strictyaml.Decoder(w.File, raw.Params, path+".params", w.Keys)
	probe := func(into any) error { called = true; return dec(into) }
	if _, _, err := fault.New(spec.Name, probe); err != nil {
		w.Add(w.located(err, path+".params", path))
		*ok = false
		return
	}
	if !called && strictyaml.HasValue(raw.Params) {
		w.Errorf(path+".params", "fault %s takes no params", spec.Name)
		*ok = false
		return
	}
	params, err := strictyaml.RawOf(w.File, raw.Params, path+".params")
	if err == nil {
		if params.Given() { // a later problem with the whole is at params:, as above
			pl, pc := w.At(path + ".params")
			params.Line, params.Col = pl, pc
			params.At[params.Path] = strictyaml.Pos{Line: pl, Col: pc}
		}
		st.Params = params
		_, err = st.New() // what a firing will build, from the kept params
	}
	if err != nil {
		w.Add(w.located(err, path+".params", path))
		*ok = false
	}
}

// checkSpec reads one `checks:` entry, a check name or a `name: {params}`
// mapping, validates its params through the check registry, and keeps
// them in the CheckSpec (plain data: CheckSpec.New decodes them again).
func (w *walker) checkSpec(n ast.Node, path string, service string) (CheckSpec, bool) {
	n = strictyaml.Unwrap(n)
	line, _ := w.At(path)
	var name string
	var params ast.Node
	paramPath := path
	switch v := n.(type) {
	case *ast.StringNode:
		name = v.Value
	default:
		pairs, ok := strictyaml.MapPairs(n)
		if !ok || len(pairs) != 1 {
			w.Errorf(path, "must be a check name (like total-order) or one `name: {params}` mapping, not %s", strictyaml.DescribeNode(n))
			return CheckSpec{}, false
		}
		name = strictyaml.KeyText(pairs[0].Key)
		params = pairs[0].Value
		paramPath = strictyaml.JoinPath(path, name)
		w.Keys[paramPath] = pairs[0].Key
	}
	if _, found := check.Lookup(name); !found {
		w.Errorf(paramPath, "unknown check %q%s (known: %s)", name, strictyaml.Suggest(name, check.Names()), strings.Join(check.Names(), ", "))
		return CheckSpec{}, false
	}
	called := false
	dec := strictyaml.Decoder(w.File, params, paramPath, w.Keys)
	probe := func(into any) error { called = true; return dec(into) }
	if _, err := check.New(name, probe); err != nil {
		w.Add(w.located(err, paramPath, paramPath))
		return CheckSpec{}, false
	}
	if !called && strictyaml.HasValue(params) {
		w.Errorf(paramPath, "check %s takes no params", name)
		return CheckSpec{}, false
	}
	spec := CheckSpec{Name: name, Service: service, Line: line}
	raw, err := strictyaml.RawOf(w.File, params, paramPath)
	if err == nil {
		if raw.Given() { // a later problem with the whole is at the check's name, as above
			kl, kc := w.At(paramPath)
			raw.Line, raw.Col = kl, kc
			raw.At[paramPath] = strictyaml.Pos{Line: kl, Col: kc}
		}
		spec.Params = raw
		_, err = spec.New() // what a run will build, from the kept params
	}
	if err != nil {
		w.Add(w.located(err, paramPath, paramPath))
		return CheckSpec{}, false
	}
	return spec, true
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
	if errors.As(err, &pe) && pe.Param != "" && w.Has(strictyaml.JoinPath(path, pe.Param)) {
		p = strictyaml.JoinPath(path, pe.Param)
	}
	if !w.Has(p) {
		if _, ok := w.Vals[p]; !ok {
			p = alt
		}
	}
	line, col := w.At(p)
	return &Error{File: w.File, Line: line, Col: col, Path: p, Msg: err.Error()}
}
