package scenario

import (
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/bidikit/bidikit/harness/threshold"
	"github.com/bidikit/bidikit/internal/strictyaml"
)

// thresholds parses the `thresholds:` block, a mapping of role name to a
// mapping of metric to bound (errors also takes a mapping of status code
// to bound), into s.Thresholds and one CheckSpec each, appended to
// s.Checks in file order. Problems are recorded with their file, line,
// column and path (thresholds.ROLE.METRIC[.CODE]).
func (w *walker) thresholds(node ast.Node, s *Scenario, durOK bool) {
	const form = `a mapping of role name to bounds, like {honest: {p99: 50ms, errors: 1%}}`
	node = strictyaml.Unwrap(node)
	if !strictyaml.HasValue(node) {
		w.Errorf("thresholds", "has no value; give %s or remove the line", form)
		return
	}
	roles, ok := strictyaml.MapPairs(node)
	if !ok {
		w.Errorf("thresholds", "must be %s, not %s", form, strictyaml.DescribeNode(node))
		return
	}
	byName := map[string]Role{}
	var names []string
	for _, r := range s.Roles {
		if r.Name != "" {
			byName[r.Name] = r
			names = append(names, r.Name)
		}
	}
	seenRole := map[string]bool{}
	for _, kv := range roles {
		role := strictyaml.KeyText(kv.Key)
		rp := strictyaml.JoinPath("thresholds", role)
		w.Keys[rp] = kv.Key
		r, found := byName[role]
		switch {
		case !found:
			w.Errorf(rp, "unknown role %q%s (roles: %s)", role, strictyaml.Suggest(role, names), strings.Join(names, ", "))
			continue
		case seenRole[role]:
			w.Errorf(rp, "role %q is listed twice", role)
			continue
		}
		seenRole[role] = true
		val := strictyaml.Unwrap(kv.Value)
		metrics, ok := strictyaml.MapPairs(val)
		if !strictyaml.HasValue(val) || !ok || len(metrics) == 0 {
			w.Errorf(rp, "must be a mapping of metric to bound, like {p99: 50ms, delivered_per_sec: 1000}, not %s (metrics: %s)",
				strictyaml.DescribeNode(val), strings.Join(threshold.Metrics(), ", "))
			continue
		}
		to := r.Stop
		if to == 0 && durOK {
			to = s.Duration
		}
		seenMetric := map[string]bool{}
		for _, mkv := range metrics {
			metric := strictyaml.KeyText(mkv.Key)
			mp := strictyaml.JoinPath(rp, metric)
			w.Keys[mp] = mkv.Key
			switch {
			case !threshold.IsMetric(metric):
				w.Errorf(mp, "unknown metric %q%s (known: %s)", metric, strictyaml.Suggest(metric, threshold.Metrics()), strings.Join(threshold.Metrics(), ", "))
				continue
			case seenMetric[metric]:
				w.Errorf(mp, "metric %q is listed twice for role %s", metric, role)
				continue
			}
			seenMetric[metric] = true
			base := threshold.Spec{Role: role, From: r.Start, To: to}
			mval := strictyaml.Unwrap(mkv.Value)
			codes, isMap := strictyaml.MapPairs(mval)
			if threshold.IsErrors(metric) && isMap {
				if len(codes) == 0 {
					w.Errorf(mp, "lists no status codes; give a bound like 1%% or {RESOURCE_EXHAUSTED: 5}")
				}
				seenCode := map[string]bool{}
				for _, ckv := range codes {
					code := strictyaml.KeyText(ckv.Key)
					cp := strictyaml.JoinPath(mp, code)
					w.Keys[cp] = ckv.Key
					switch {
					case !threshold.IsCode(code):
						w.Errorf(cp, "unknown status code %q%s (known: %s)", code, strictyaml.Suggest(code, threshold.Codes()), strings.Join(threshold.Codes(), ", "))
						continue
					case seenCode[code]:
						w.Errorf(cp, "status code %s is listed twice", code)
						continue
					}
					seenCode[code] = true
					spec := base
					spec.Code = code
					w.threshold(s, spec, metric, ckv.Value, cp)
				}
				continue
			}
			w.threshold(s, base, metric, mkv.Value, mp)
		}
	}
}

// threshold reads one bound at path and adds the threshold and its check.
func (w *walker) threshold(s *Scenario, spec threshold.Spec, metric string, node ast.Node, path string) {
	node = strictyaml.Unwrap(node)
	w.Vals[path] = node
	var text string
	switch n := node.(type) {
	case *ast.StringNode:
		text = n.Value
	case *ast.IntegerNode, *ast.FloatNode:
		text = n.GetToken().Value
	default:
		hint := ""
		if n != nil && strings.HasPrefix(strings.TrimSpace(n.String()), ">") {
			hint = " (quote a bound that starts with '>': \">= 100\")"
		}
		w.Errorf(path, "must be a bound like \"50ms\", \"<= 200ms\", \"1%%\" or 5000, not %s%s", strictyaml.DescribeNode(node), hint)
		return
	}
	if err := threshold.ParseBound(metric, text, &spec); err != nil {
		w.Errorf(path, "%v", err)
		return
	}
	line, _ := w.At(path)
	s.Thresholds = append(s.Thresholds, spec)
	s.Checks = append(s.Checks, CheckSpec{Name: spec.Name(), Line: line, Threshold: &spec})
}
