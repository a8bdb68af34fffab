package scenario

import (
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/bidikit/bidikit/internal/strictyaml"
)

// Error is one problem in a scenario file: where it is (file, 1-based line
// and column) and which field (a path like "roles[1].rate"). Load and Parse
// return these, joined with errors.Join when a file has several.
type Error = strictyaml.Error

// walker is one parse's strict YAML document (strictyaml.Doc) with the
// scenario rules on top; src is the file's bytes (a custom scenario's
// protocol block reads block scalars' positions from it).
type walker struct {
	*strictyaml.Doc
	src []byte
}

func newWalker(file string) *walker { return &walker{Doc: strictyaml.NewDoc(file)} }

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
)

// defaultScopePrefix is the scope_prefix a role gets when it names none.
var defaultScopePrefix = map[string]string{Chat: "room", Collab: "doc", Game: "match", Custom: "room"}

// scopeKey is the service-specific spelling of Role.Scopes.
var scopeKey = map[string]string{Chat: "rooms", Collab: "documents", Game: "matches", Custom: "rooms"}

// Parse parses and validates one scenario file's contents; file is the name
// used in messages and recorded in Scenario.File. Unknown fields, wrong
// types and impossible values are errors naming file, line, column and field.
func Parse(file string, data []byte) (*Scenario, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, strictyaml.SyntaxError(file, err)
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
		line, col := strictyaml.NodePos(docs[1].Body)
		return nil, &Error{File: file, Line: line, Col: col, Msg: "one scenario per file: found a second YAML document"}
	}
	w := newWalker(file)
	w.src = data
	sc, err := w.scenario(docs[0].Body)
	if err != nil {
		return nil, err
	}
	sc.Source = append([]byte(nil), data...)
	return sc, nil
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
	Protocol             ast.Node      `yaml:"protocol"` // service: custom (custom.go)
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

func (w *walker) scenario(body ast.Node) (*Scenario, error) {
	w.Shape(body, reflect.TypeOf(rawScenario{}), "")
	if len(w.Errs) > 0 {
		return nil, w.Err()
	}
	var raw rawScenario
	if err := yaml.NodeToValue(body, &raw, yaml.Strict()); err != nil {
		return nil, w.Convert(err, "")
	}
	s := w.build(&raw)
	if len(w.Errs) > 0 {
		return nil, w.Err()
	}
	return s, nil
}

// build validates raw values and assembles the Scenario.
func (w *walker) build(raw *rawScenario) *Scenario {
	s := &Scenario{
		File:           w.File,
		Name:           raw.Name,
		Description:    raw.Description,
		Service:        raw.Service,
		Seed:           DefaultSeed,
		Duration:       raw.Duration,
		Ramp:           raw.Ramp,
		Settle:         DefaultSettle,
		StreamsPerConn: 1,
	}
	if !w.Has("name") {
		base := filepath.Base(w.File)
		s.Name = strings.TrimSuffix(base, filepath.Ext(base))
	} else if strings.TrimSpace(raw.Name) == "" {
		w.Errorf("name", "must not be empty (or leave it out to use the file name)")
	}
	serviceOK := false
	switch {
	case !w.Has("service"):
		w.Errorf("", "missing field service (one of chat, collab, game, custom)")
	case raw.Service == Chat || raw.Service == Collab || raw.Service == Game || raw.Service == Custom:
		serviceOK = true
	default:
		w.Errorf("service", "unknown service %q (known: chat, collab, game, custom)", raw.Service)
	}
	w.protocolBlock(raw, s)
	if w.Has("seed") {
		s.Seed = raw.Seed
	}
	durationOK := false
	switch {
	case !w.Has("duration"):
		w.Errorf("", "missing field duration (how long clients run, like \"30s\")")
	case raw.Duration <= 0:
		w.Errorf("duration", "must be more than 0, got %s", raw.Duration)
	default:
		durationOK = true
	}
	if raw.Ramp < 0 {
		w.Errorf("ramp", "must not be negative, got %s", raw.Ramp)
	} else if durationOK && raw.Ramp >= raw.Duration {
		w.Errorf("ramp", "%s must be shorter than duration %s", raw.Ramp, raw.Duration)
	}
	if w.Has("settle") {
		s.Settle = raw.Settle
		if raw.Settle < 0 {
			w.Errorf("settle", "must not be negative, got %s", raw.Settle)
		}
	}
	if w.Has("streams_per_connection") {
		s.StreamsPerConn = raw.StreamsPerConnection
		if raw.StreamsPerConnection < 1 || raw.StreamsPerConnection > MaxStreamsPerConnection {
			w.Errorf("streams_per_connection", "must be between 1 and %d, got %d", MaxStreamsPerConnection, raw.StreamsPerConnection)
		}
	}

	// Roles.
	if !w.Has("roles") {
		w.Errorf("", "missing field roles (at least one group of clients)")
	} else if len(raw.Roles) == 0 {
		w.Errorf("roles", "must list at least one role")
	}
	roleCount := map[string]int{}
	for i := range raw.Roles {
		path := fmt.Sprintf("roles[%d]", i)
		r := w.role(&raw.Roles[i], path, raw.Service, serviceOK, raw.Duration, durationOK)
		if r.Name != "" {
			if _, dup := roleCount[r.Name]; dup {
				w.Errorf(path+".name", "duplicate role name %q; role names must be unique", r.Name)
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
	if !w.Has("checks") {
		w.Errorf("", "missing field checks (list the checks to run, or write `checks: []` for a load-only run)")
	}
	for i, n := range raw.Checks {
		if c, ok := w.checkSpec(n, fmt.Sprintf("checks[%d]", i), s.Service); ok {
			s.Checks = append(s.Checks, c)
		}
	}

	// Thresholds: each one more check, after the listed ones.
	if w.Has("thresholds") {
		w.thresholds(raw.Thresholds, s, durationOK)
	}
	w.customChecks(s)
	return s
}

func (w *walker) role(raw *rawRole, path string, service string, serviceOK bool, dur time.Duration, durOK bool) Role {
	r := Role{Name: raw.Name, Count: raw.Count, Behaviour: raw.Behaviour, Start: raw.Start, Stop: raw.Stop}
	if !w.Has(path + ".name") {
		w.Errorf(path, "missing field name")
	} else if raw.Name == "" || strings.ContainsAny(raw.Name, " \t,") {
		w.Errorf(path+".name", "%q is not a usable role name (non-empty, no spaces or commas)", raw.Name)
	}
	if !w.Has(path + ".count") {
		w.Errorf(path, "missing field count (how many clients play this role)")
	} else if raw.Count < 1 || raw.Count > MaxRoleCount {
		w.Errorf(path+".count", "must be between 1 and %d, got %d", MaxRoleCount, raw.Count)
	}

	// Behaviour.
	var beh Behaviour
	behOK := false
	if !w.Has(path + ".behaviour") {
		w.Errorf(path, "missing field behaviour (one of: %s)", strings.Join(behaviourNames(""), ", "))
	} else if len(BehaviourNames("")) == 0 {
		w.Errorf(path+".behaviour", "no behaviour is registered in this program: import github.com/bidikit/bidikit/harness/engine, which implements them")
	} else if b, ok := LookupBehaviourFor(service, raw.Behaviour); !ok {
		w.Errorf(path+".behaviour", "unknown behaviour %q%s (known: %s)", raw.Behaviour, strictyaml.Suggest(raw.Behaviour, behaviourNames("")), strings.Join(behaviourNames(""), ", "))
	} else if serviceOK && b.Service != "" && b.Service != service {
		w.Errorf(path+".behaviour", "behaviour %q is for %s scenarios, not %s (for %s: %s)", b.Name, b.Service, service, service, strings.Join(behaviourNames(service), ", "))
	} else {
		beh, behOK = b, true
	}

	// Rate.
	if raw.Rate != nil {
		rate, err := parseRate(strictyaml.Unwrap(raw.Rate))
		if err != nil {
			w.Errorf(path+".rate", "%v", err)
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
			if key != want && svc != Custom && w.Has(path+"."+key) {
				w.Errorf(path+"."+key, "%s is how %s scenarios spread clients; a %s scenario uses %s:", key, svc, service, want)
			}
		}
		var n int
		switch service {
		case Chat, Custom:
			n = raw.Rooms
		case Collab:
			n = raw.Documents
		case Game:
			n = raw.Matches
		}
		if w.Has(path + "." + want) {
			r.Scopes = n
			if n < 1 || n > MaxRoleCount {
				w.Errorf(path+"."+want, "must be between 1 and %d, got %d", MaxRoleCount, n)
			}
		}
		r.ScopePrefix = defaultScopePrefix[service]
	}
	if w.Has(path+".scope_prefix") && service == Custom {
		w.Errorf(path+".scope_prefix", "a custom protocol names room i by protocol.room_name (default %q), the same for every role; scope_prefix does not apply", "room-{{index}}")
	} else if w.Has(path + ".scope_prefix") {
		r.ScopePrefix = raw.ScopePrefix
		if !validPrefix(raw.ScopePrefix) {
			w.Errorf(path+".scope_prefix", "%q is not a usable prefix (letters, digits, '-', '_' only)", raw.ScopePrefix)
		}
	}

	// Active window.
	if raw.Start < 0 {
		w.Errorf(path+".start", "must not be negative, got %s", raw.Start)
	} else if durOK && raw.Start >= dur {
		w.Errorf(path+".start", "%s is not before the end of the run (duration %s)", raw.Start, dur)
	}
	if w.Has(path + ".stop") {
		switch {
		case raw.Stop <= raw.Start:
			w.Errorf(path+".stop", "%s must be after start %s", raw.Stop, raw.Start)
		case durOK && raw.Stop > dur:
			w.Errorf(path+".stop", "%s is after the end of the run (duration %s)", raw.Stop, dur)
		}
	}

	// Params.
	if behOK {
		params := beh.Params()
		dec := strictyaml.Decoder(w.File, raw.Params, path+".params", w.Keys)
		if err := dec(params); err != nil {
			w.Add(err)
		} else {
			w.validateParams(params, path, r)
		}
		r.Params = params
	}
	return r
}

// validateParams checks a behaviour's decoded params through their own
// CheckParams (ParamsChecker), then their Validate method when they have one.
func (w *walker) validateParams(params any, path string, r Role) {
	pp := path + ".params"
	pc := &ParamsCheck{Role: r, File: w.File, Bad: func(field, format string, args ...any) {
		fp := pp + "." + field
		if !w.Has(fp) {
			fp = pp // a default is wrong only relative to the role (rooms)
			if !w.Has(pp) {
				fp = path
			}
		}
		w.Errorf(fp, format, args...)
	}}
	if c, ok := params.(ParamsChecker); ok {
		c.CheckParams(pc)
	}
	if v, ok := params.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			w.Errorf(pp, "%v", err)
		}
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
		return 0, fmt.Errorf("must be a rate, not %s; %s", strictyaml.DescribeNode(n), forms)
	}
	if !(v > 0) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("must be more than 0, got %v per second", v)
	}
	if v > MaxRate {
		return 0, fmt.Errorf("%v per second is over the limit of %v per client", v, MaxRate)
	}
	return v, nil
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
