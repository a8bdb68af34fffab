package generic

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// CallData is what a --data or --metadata template sees: ghz's fields
// with ghz's names, so a ghz template works unchanged. RequestNumber counts
// calls in a round; with --stream-dynamic-messages the timestamps and UUID
// are fresh for each message, as in ghz.
type CallData struct {
	WorkerID           string
	RequestNumber      int64
	FullyQualifiedName string
	MethodName         string
	ServiceName        string
	InputName          string
	OutputName         string
	IsClientStreaming  bool
	IsServerStreaming  bool
	Timestamp          string
	TimestampUnix      int64
	TimestampUnixMilli int64
	TimestampUnixNano  int64
	UUID               string
}

// templateFuncs are ghz's template functions: sprig's and its own
// newUUID, randomString and randomInt.
func templateFuncs() template.FuncMap {
	f := template.FuncMap(sprig.TxtFuncMap())
	f["newUUID"] = func() string { return uuid.NewString() }
	f["randomString"] = func(n int) string {
		const charset = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		if n <= 0 {
			n = 2 + rand.IntN(15)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = charset[rand.IntN(len(charset))]
		}
		return string(b)
	}
	f["randomInt"] = func(lo, hi int) int {
		lo, hi = max(lo, 0), max(hi, 1)
		if hi <= lo {
			return lo
		}
		return lo + rand.IntN(hi-lo)
	}
	return f
}

// payload builds a call's request messages from --data: an object (one
// message) or an array (a call sends them in turn, starting over after the
// last, as ghz does). Without template actions the messages are encoded
// once and shared; with them the template runs per call (per message with
// --stream-dynamic-messages) and its output is decoded and encoded again.
// Read-only after newPayload: safe for every stream at once.
type payload struct {
	md      protoreflect.MethodDescriptor
	in      protoreflect.MessageType
	static  []wire             // the messages, when data has no template
	tmpl    *template.Template // the data's template, else nil
	mdTmpl  *template.Template // the metadata's template, else nil
	perMsg  bool               // --stream-dynamic-messages
	staticM map[string]string  // the metadata, when it has no template
}

// newPayload prepares data and metadata for md, and tries them once with
// sample call data: a message that does not fit the method's input type,
// or a template that does not run, is an error here, before any load.
func newPayload(md protoreflect.MethodDescriptor, data, metadata string, perMsg bool) (*payload, error) {
	p := &payload{md: md, in: dynamicpb.NewMessageType(md.Input()), perMsg: perMsg}
	if strings.Contains(data, "{{") {
		t, err := template.New("--data").Funcs(templateFuncs()).Parse(data)
		if err != nil {
			return nil, fmt.Errorf("--data template: %w", err)
		}
		p.tmpl = t
		if _, err := p.render(p.sample()); err != nil {
			return nil, err
		}
	} else {
		ws, err := p.encode([]byte(data))
		if err != nil {
			return nil, err
		}
		p.static = ws
	}
	if strings.Contains(metadata, "{{") {
		t, err := template.New("--metadata").Funcs(templateFuncs()).Parse(metadata)
		if err != nil {
			return nil, fmt.Errorf("--metadata template: %w", err)
		}
		p.mdTmpl = t
		if _, err := p.metadata(p.sample()); err != nil {
			return nil, err
		}
	} else if metadata != "" {
		m, err := decodeMetadata([]byte(metadata))
		if err != nil {
			return nil, err
		}
		p.staticM = m
	}
	return p, nil
}

// sample is call data for trying templates before the run.
func (p *payload) sample() *CallData { return p.callData("g0c0", 0) }

// callData is the template data of one call.
func (p *payload) callData(worker string, n int64) *CallData {
	now := time.Now()
	return &CallData{
		WorkerID: worker, RequestNumber: n,
		FullyQualifiedName: string(p.md.FullName()), MethodName: string(p.md.Name()),
		ServiceName: string(p.md.Parent().Name()), InputName: string(p.md.Input().Name()),
		OutputName: string(p.md.Output().Name()), IsClientStreaming: p.md.IsStreamingClient(),
		IsServerStreaming: p.md.IsStreamingServer(),
		Timestamp:         now.Format(time.RFC3339), TimestampUnix: now.Unix(),
		TimestampUnixMilli: now.UnixMilli(), TimestampUnixNano: now.UnixNano(),
		UUID: uuid.NewString(),
	}
}

// refresh renews cd's timestamps and UUID (ghz's Regenerate).
func refresh(cd *CallData) *CallData {
	c := *cd
	now := time.Now()
	c.Timestamp, c.TimestampUnix, c.TimestampUnixMilli, c.TimestampUnixNano = now.Format(time.RFC3339), now.Unix(), now.UnixMilli(), now.UnixNano()
	c.UUID = uuid.NewString()
	return &c
}

// forCall returns the messages a call starts with: the shared ones, or
// the template rendered for cd.
func (p *payload) forCall(cd *CallData) ([]wire, error) {
	if p.tmpl == nil {
		return p.static, nil
	}
	return p.render(cd)
}

// render runs the data template for cd and encodes what it produced.
func (p *payload) render(cd *CallData) ([]wire, error) {
	var b bytes.Buffer
	if err := p.tmpl.Execute(&b, cd); err != nil {
		return nil, fmt.Errorf("--data template: %w", err)
	}
	return p.encode(b.Bytes())
}

// encode decodes JSON (an object or an array of objects) into the input
// type and encodes each message. Errors name the type and, for an array,
// the element.
func (p *payload) encode(js []byte) ([]wire, error) {
	var raws []json.RawMessage
	trimmed := bytes.TrimSpace(js)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, fmt.Errorf("--data is not a JSON array of messages: %w", err)
		}
		if len(raws) == 0 {
			return nil, fmt.Errorf("--data is an empty array: give at least one message")
		}
	} else {
		raws = []json.RawMessage{trimmed}
	}
	out := make([]wire, 0, len(raws))
	for i, r := range raws {
		m := p.in.New().Interface()
		if err := protojson.Unmarshal(r, m); err != nil {
			where := ""
			if len(raws) > 1 {
				where = fmt.Sprintf(" (element %d)", i)
			}
			return nil, fmt.Errorf("--data%s does not fit %s: %v", where, p.md.Input().FullName(), err)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("--data: encoding %s: %w", p.md.Input().FullName(), err)
		}
		out = append(out, wire(b))
	}
	return out, nil
}

// metadata is the call's request metadata: the shared map, or the
// template rendered for cd.
func (p *payload) metadata(cd *CallData) (map[string]string, error) {
	if p.mdTmpl == nil {
		return p.staticM, nil
	}
	var b bytes.Buffer
	if err := p.mdTmpl.Execute(&b, cd); err != nil {
		return nil, fmt.Errorf("--metadata template: %w", err)
	}
	return decodeMetadata(b.Bytes())
}

// decodeMetadata reads a JSON object of strings; as in ghz, a key ending
// in -bin holds base64 that is sent decoded.
func decodeMetadata(js []byte) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, fmt.Errorf("--metadata: want a JSON object of strings like {\"authorization\":\"Bearer t\"}: %v", err)
	}
	for k, v := range m {
		if strings.HasSuffix(k, "-bin") {
			d, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("--metadata %q: a -bin key holds base64: %v", k, err)
			}
			m[k] = string(d)
		}
	}
	return m, nil
}
