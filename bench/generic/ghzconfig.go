package generic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bidikit/bidikit/internal/strictyaml"
)

// Setting is one field of a ghz JSON config: the value, ready to apply to
// a Config, and the bidikit flags that win over it when given on the
// command line (flags override the file, as in ghz).
type Setting struct {
	// Field is ghz's name ("concurrency"); Pos is "file:line:col".
	Field, Pos string
	// Flags are bidikit's flags for the same thing (the first is the one
	// it stands for).
	Flags []string
	// TLS is true for the fields that choose TLS or plaintext.
	TLS   bool
	apply func(*Config)
}

// Apply sets the field's value in c.
func (s Setting) Apply(c *Config) { s.apply(c) }

// ghzField is how one ghz config field is read. unsupported says why
// bidikit does not read a field of ghz's; such a field is still accepted
// when its value is ghz's default (it changes nothing), else refused.
type ghzField struct {
	flags       []string
	tls         bool
	read        func(raw json.RawMessage) (func(*Config), error)
	unsupported string
}

var tlsFlags = []string{"insecure", "tls", "tls-ca", "tls-cert", "tls-key", "tls-server-name", "tls-skip-verify"}

// ghzFields are the fields of ghz v0.120.0's JSON config (runner.Config's
// json names) and how bidikit reads each.
var ghzFields = map[string]ghzField{
	"call":                    {flags: []string{"call"}, read: str(func(c *Config, v string) { c.Call = v })},
	"host":                    {flags: []string{"target"}, read: str(func(c *Config, v string) { c.Target = v })},
	"proto":                   {flags: []string{"proto"}, read: str(func(c *Config, v string) { c.Proto = v })},
	"protoset":                {flags: []string{"protoset"}, read: str(func(c *Config, v string) { c.Protoset = v })},
	"import-paths":            {flags: []string{"import-paths"}, read: strs(func(c *Config, v []string) { c.ImportPaths = v })},
	"insecure":                {flags: tlsFlags, tls: true, read: boolean(func(c *Config, v bool) { c.Insecure = v })},
	"cacert":                  {flags: []string{"tls-ca", "insecure"}, tls: true, read: str(func(c *Config, v string) { c.CACert, c.Insecure = v, false })},
	"cert":                    {flags: []string{"tls-cert", "insecure"}, tls: true, read: str(func(c *Config, v string) { c.Cert, c.Insecure = v, false })},
	"key":                     {flags: []string{"tls-key", "insecure"}, tls: true, read: str(func(c *Config, v string) { c.Key, c.Insecure = v, false })},
	"cname":                   {flags: []string{"tls-server-name", "insecure"}, tls: true, read: str(func(c *Config, v string) { c.ServerName, c.Insecure = v, false })},
	"skipTLS":                 {flags: []string{"tls-skip-verify", "insecure"}, tls: true, read: boolean(func(c *Config, v bool) { c.SkipVerify = v; c.Insecure = c.Insecure && !v })},
	"total":                   {flags: []string{"total", "duration"}, read: count(func(c *Config, v uint) { c.Total = v })},
	"concurrency":             {flags: []string{"concurrency"}, read: count(func(c *Config, v uint) { c.Concurrency = v })},
	"connections":             {flags: []string{"connections"}, read: count(func(c *Config, v uint) { c.Connections = v })},
	"duration":                {flags: []string{"duration", "total"}, read: duration(func(c *Config, v time.Duration) { c.Duration = v })},
	"max-duration":            {flags: []string{"max-duration"}, read: duration(func(c *Config, v time.Duration) { c.MaxDuration = v })},
	"connect-timeout":         {flags: []string{"dial-timeout"}, read: duration(func(c *Config, v time.Duration) { c.DialTimeout = v })},
	"data":                    {flags: []string{"data", "data-file"}, read: messages},
	"data-file":               {flags: []string{"data-file", "data"}, read: str(func(c *Config, v string) { c.DataFile = v })},
	"metadata":                {flags: []string{"metadata", "metadata-file"}, read: strMap(func(c *Config, v map[string]string) { b, _ := json.Marshal(v); c.Metadata = string(b) })},
	"metadata-file":           {flags: []string{"metadata-file", "metadata"}, read: str(func(c *Config, v string) { c.MetadataFile = v })},
	"reflect-metadata":        {read: strMap(func(c *Config, v map[string]string) { c.ReflectMetadata = v })},
	"stream-interval":         {flags: []string{"stream-interval"}, read: duration(func(c *Config, v time.Duration) { c.StreamInterval = v })},
	"stream-call-count":       {flags: []string{"stream-call-count"}, read: count(func(c *Config, v uint) { c.StreamCallCount = v })},
	"stream-dynamic-messages": {flags: []string{"stream-dynamic-messages"}, read: boolean(func(c *Config, v bool) { c.StreamDynamicMessages = v })},
	"output":                  {flags: []string{"output"}, read: str(func(c *Config, v string) { c.Output = v })},
	"format":                  {flags: []string{"format"}, read: str(func(c *Config, v string) { c.Format = v })},
	"name":                    {flags: []string{"name"}, read: str(func(c *Config, v string) { c.Name = v })},
	"tags":                    {flags: []string{"tags"}, read: strMap(func(c *Config, v map[string]string) { c.Tags = v })},
	"duration-stop":           {read: durationStop},

	"count-errors":               {unsupported: "bidikit always counts errors by status code"},
	"skipFirst":                  {unsupported: "bidikit has no warm-up calls to skip"},
	"authority":                  {unsupported: "the :authority override is not supported"},
	"async":                      {unsupported: "bidikit's streams make their calls one after another (ghz's default)"},
	"rps":                        {unsupported: "ghz's rps paces calls; bidikit paces messages per stream: use --rate"},
	"timeout":                    {unsupported: "bidikit has no per-call timeout (rounds end by -z, -n or -x)"},
	"binary-file":                {unsupported: "binary request data is not supported: give JSON (data or data-file)"},
	"stream-call-duration":       {unsupported: "use stream-call-count (messages per call) or -z"},
	"keepalive":                  {unsupported: "client keepalive is not supported"},
	"cpus":                       {unsupported: "bidikit uses GOMAXPROCS (set the environment variable)"},
	"debug":                      {unsupported: "there is no debug log; --log-level sets harness logs"},
	"enable-compression":         {unsupported: "compression is not supported"},
	"lb-strategy":                {unsupported: "load-balancing policies are not supported"},
	"max-recv-message-size":      {unsupported: "message sizes are not limited by bidikit (math.MaxInt32)"},
	"max-send-message-size":      {unsupported: "message sizes are not limited by bidikit (math.MaxInt32)"},
	"disable-template-functions": {unsupported: "template functions are always available"},
	"disable-template-data":      {unsupported: "template data is always available"},
	"concurrency-schedule":       {unsupported: "concurrency schedules are not supported: -c streams run throughout"},
	"concurrency-start":          {unsupported: "concurrency schedules are not supported"},
	"concurrency-end":            {unsupported: "concurrency schedules are not supported"},
	"concurrency-step":           {unsupported: "concurrency schedules are not supported"},
	"concurrency-step-duration":  {unsupported: "concurrency schedules are not supported"},
	"concurrency-max-duration":   {unsupported: "concurrency schedules are not supported"},
	"load-schedule":              {unsupported: "load schedules are not supported: use --rate (messages per second per stream)"},
	"load-start":                 {unsupported: "load schedules are not supported"},
	"load-end":                   {unsupported: "load schedules are not supported"},
	"load-step":                  {unsupported: "load schedules are not supported"},
	"load-step-duration":         {unsupported: "load schedules are not supported"},
	"load-max-duration":          {unsupported: "load schedules are not supported"},
}

// ghzDefaults are the values of unsupported fields that change nothing:
// ghz's defaults (and the zero values).
var ghzDefaults = map[string]bool{`false`: true, `0`: true, `""`: true, `null`: true, `"const"`: true, `"0s"`: true, `"0"`: true}

// LoadGhzConfig reads a ghz JSON config file (`ghz --config`): one object
// whose fields are ghz's. It returns the settings in the file's order.
// Errors name the file, line and column, and the field: a field ghz does
// not have (with the nearest it does), a value of the wrong type, or a
// field of ghz's that bidikit does not support set to something other than
// ghz's default (saying why). TOML and YAML configs are refused: bidikit
// reads ghz's JSON form only.
func LoadGhzConfig(path string) ([]Setting, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml", ".yaml", ".yml":
		return nil, usagef("--config %s: bidikit reads ghz's JSON config only", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--config: %v", err)
	}
	fields, err := scanObject(path, data)
	if err != nil {
		return nil, err
	}
	out := make([]Setting, 0, len(fields))
	for _, f := range fields {
		spec, ok := ghzFields[f.name]
		if !ok {
			return nil, usagef("%s: unknown field %q%s (a ghz JSON config's fields: %s)", f.pos, f.name, strictyaml.Suggest(f.name, fieldNames()), strings.Join(fieldNames(), ", "))
		}
		if spec.unsupported != "" {
			if ghzDefaults[string(bytes.TrimSpace(f.raw))] {
				continue
			}
			return nil, usagef("%s: field %q is not supported by bidikit bench: %s", f.pos, f.name, spec.unsupported)
		}
		apply, err := spec.read(f.raw)
		if err != nil {
			return nil, usagef("%s: field %q: %v", f.pos, f.name, err)
		}
		out = append(out, Setting{Field: f.name, Pos: f.pos, Flags: spec.flags, TLS: spec.tls, apply: apply})
	}
	var probe Config
	pos := map[string]string{}
	for _, s := range out {
		s.Apply(&probe)
		pos[s.Field] = s.Pos
	}
	if probe.Total > 0 && probe.Duration > 0 {
		return nil, usagef("%s: field \"total\" (%d calls) and field \"duration\" (%s, %v) exclude each other: ghz ignores total when duration is set, bidikit asks for one", pos["total"], probe.Total, pos["duration"], probe.Duration)
	}
	return out, nil
}

// fieldNames lists ghz's config fields, sorted.
func fieldNames() []string {
	out := make([]string, 0, len(ghzFields))
	for k := range ghzFields {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// rawField is one top-level field with where its name starts.
type rawField struct {
	name, pos string
	raw       json.RawMessage
}

// scanObject reads the top-level object of data field by field, keeping
// each name's position; a duplicate field, a syntax error or anything but
// an object is an error naming the file and position.
func scanObject(path string, data []byte) ([]rawField, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	syntax := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return usagef("%s: %v", position(path, data, int(se.Offset)), err)
		}
		return usagef("%s: %v", path, err)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, usagef("%s: a ghz config is one JSON object {...}", position(path, data, 0))
	}
	seen := map[string]string{}
	var out []rawField
	for dec.More() {
		off := int(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		name, _ := tok.(string)
		at := off
		if i := bytes.IndexByte(data[off:], '"'); i >= 0 {
			at = off + i
		}
		pos := position(path, data, at)
		if first, dup := seen[name]; dup {
			return nil, usagef("%s: field %q again (first at %s)", pos, name, first)
		}
		seen[name] = pos
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntax(err)
		}
		out = append(out, rawField{name: name, pos: pos, raw: raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, syntax(err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, usagef("%s: more after the config's object", position(path, data, int(dec.InputOffset())))
	}
	return out, nil
}

// position is "path:line:col" of a byte offset (1-based).
func position(path string, data []byte, off int) string {
	off = min(max(off, 0), len(data))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Sprintf("%s:%d:%d", path, line, col)
}

func str(set func(*Config, string)) func(json.RawMessage) (func(*Config), error) {
	return func(raw json.RawMessage) (func(*Config), error) {
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("want a string, got %s", raw)
		}
		return func(c *Config) { set(c, v) }, nil
	}
}

func strs(set func(*Config, []string)) func(json.RawMessage) (func(*Config), error) {
	return func(raw json.RawMessage) (func(*Config), error) {
		var v []string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("want an array of strings, got %s", raw)
		}
		return func(c *Config) { set(c, v) }, nil
	}
}

func boolean(set func(*Config, bool)) func(json.RawMessage) (func(*Config), error) {
	return func(raw json.RawMessage) (func(*Config), error) {
		var v bool
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("want true or false, got %s", raw)
		}
		return func(c *Config) { set(c, v) }, nil
	}
}

func count(set func(*Config, uint)) func(json.RawMessage) (func(*Config), error) {
	return func(raw json.RawMessage) (func(*Config), error) {
		var v uint
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("want a whole number >= 0, got %s", raw)
		}
		return func(c *Config) { set(c, v) }, nil
	}
}

func duration(set func(*Config, time.Duration)) func(json.RawMessage) (func(*Config), error) {
	return func(raw json.RawMessage) (func(*Config), error) {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("want a duration string like \"10s\", got %s", raw)
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("want a duration like \"10s\" or \"500ms\", got %q", s)
		}
		return func(c *Config) { set(c, d) }, nil
	}
}

func strMap(set func(*Config, map[string]string)) func(json.RawMessage) (func(*Config), error) {
	return func(raw json.RawMessage) (func(*Config), error) {
		var v map[string]string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("want an object of strings, got %s", raw)
		}
		return func(c *Config) { set(c, v) }, nil
	}
}

// messages reads "data": an object, or a non-empty array of objects (as
// ghz's checkData requires), kept as compact JSON text.
func messages(raw json.RawMessage) (func(*Config), error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	ok := false
	switch d := v.(type) {
	case map[string]any:
		ok = true
	case []any:
		ok = len(d) > 0
		for _, e := range d {
			if _, isObj := e.(map[string]any); !isObj {
				ok = false
			}
		}
	}
	if !ok {
		return nil, fmt.Errorf("want an object or a non-empty array of objects (the request messages), got %s", raw)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	text := b.String()
	return func(c *Config) { c.Data = text }, nil
}

// durationStop reads "duration-stop": bidikit's rounds always wait for the
// calls in flight, so only "wait" is accepted.
func durationStop(raw json.RawMessage) (func(*Config), error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || s != "wait" {
		return nil, fmt.Errorf("bidikit's rounds always stop new calls and wait for those in flight (ghz's \"wait\"), got %s", raw)
	}
	return func(*Config) {}, nil
}
