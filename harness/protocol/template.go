package protocol

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Values are what the harness fills into templates for one message. Which
// of them a template may use depends on the template (placeholderSets).
type Values struct {
	Room             string // {{room}}: the room's name (see Mapping.RoomName)
	Index            int    // {{index}}: the room's number, in room_name only
	Body             string // {{body}}
	ClientMsgID      string // {{client_msg_id}}: unique per sender, kept across resends
	SenderSeq        uint64 // {{sender_seq}}: 1, 2, 3, ... per sender
	SendTimeUnixNano int64  // {{send_time_unix_nano}}
	ResumeSeq        uint64 // {{resume_seq}}: the last seq seen, in resume only
	Client           string // {{client}}: the virtual client's name
	Session          string // {{session}}: the run's id (one numbering of sender_seq)
	Token            string // {{token}}: the bearer token given to the run
}

// placeholder is one name a template may use between {{ and }}.
type placeholder uint8

const (
	phRoom placeholder = iota
	phIndex
	phBody
	phClientMsgID
	phSenderSeq
	phSendTime
	phResumeSeq
	phClient
	phSession
	phToken
	numPlaceholders
)

var placeholderNames = [numPlaceholders]string{
	"room", "index", "body", "client_msg_id", "sender_seq", "send_time_unix_nano",
	"resume_seq", "client", "session", "token",
}

// isNumber says which placeholders render as JSON numbers outside a string.
func (p placeholder) isNumber() bool {
	return p == phIndex || p == phSenderSeq || p == phSendTime || p == phResumeSeq
}

// placeholderSet is the placeholders one kind of template may use.
type placeholderSet uint16

func setOf(ps ...placeholder) placeholderSet {
	var s placeholderSet
	for _, p := range ps {
		s |= 1 << p
	}
	return s
}

func (s placeholderSet) has(p placeholder) bool { return s&(1<<p) != 0 }

func (s placeholderSet) names() []string {
	var out []string
	for p := placeholder(0); p < numPlaceholders; p++ {
		if s.has(p) {
			out = append(out, placeholderNames[p])
		}
	}
	return out
}

// The placeholder sets of each kind of template.
var (
	setRoomName = setOf(phIndex)
	setMetadata = setOf(phToken, phClient, phSession)
	setOutgoing = setOf(phRoom, phBody, phClientMsgID, phSenderSeq, phSendTime, phClient, phSession, phToken)
	setResume   = setOutgoing | setOf(phResumeSeq)
)

// sampleValues fill templates when they are type-checked: a body with a
// quote and a backslash shows that escaping works.
var sampleValues = Values{
	Room: "room-1", Index: 1, Body: `sample "body" \ text`, ClientMsgID: "client-1-1",
	SenderSeq: 1, SendTimeUnixNano: 1_700_000_000_000_000_000, ResumeSeq: 41,
	Client: "client-1", Session: "run-1", Token: "token-1",
}

// template is a parsed template: literal text and placeholders, each
// placeholder knowing whether it sits inside a JSON string.
type template struct {
	src   Text
	json  bool // a JSON template (outgoing); else plain text (metadata, room_name)
	parts []part
}

type part struct {
	lit      string
	ph       placeholder
	isPh     bool
	inString bool // inside a JSON string literal: escaped, no quotes added
	off      int  // offset in the template source
}

// parseTemplate splits src into parts; a placeholder outside allowed, an
// unknown one or an unclosed {{ is an error at its position.
func parseTemplate(file string, src Text, allowed placeholderSet, json bool) (*template, []*Error) {
	t := &template{src: src, json: json}
	var errs []*Error
	s := src.Value
	litStart := 0
	inString, escaped := false, false
	flush := func(end int) {
		if end > litStart {
			t.parts = append(t.parts, part{lit: s[litStart:end], off: litStart})
		}
	}
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], "{{") {
			end := strings.Index(s[i+2:], "}}")
			if end < 0 {
				errs = append(errs, src.errorf(file, i, "unclosed {{: write a placeholder as {{name}}; placeholders here: %s", strings.Join(allowed.names(), ", ")))
				return t, errs
			}
			name := strings.TrimSpace(s[i+2 : i+2+end])
			ph, known := placeholderByName(name)
			switch {
			case !known:
				errs = append(errs, src.errorf(file, i, "unknown placeholder {{%s}}%s; placeholders here: %s", name, suggest(name, allowed.names()), strings.Join(allowed.names(), ", ")))
			case !allowed.has(ph):
				errs = append(errs, src.errorf(file, i, "placeholder {{%s}} has no value here; placeholders here: %s", name, strings.Join(allowed.names(), ", ")))
			}
			flush(i)
			t.parts = append(t.parts, part{ph: ph, isPh: true, inString: inString, off: i})
			i += 2 + end + 2
			litStart = i
			continue
		}
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		}
		i++
	}
	flush(len(s))
	if !json {
		for i := range t.parts {
			t.parts[i].inString = true // plain text: substitute as is
		}
	}
	return t, errs
}

func placeholderByName(name string) (placeholder, bool) {
	for p := placeholder(0); p < numPlaceholders; p++ {
		if placeholderNames[p] == name {
			return p, true
		}
	}
	return 0, false
}

// render appends the template filled with v to dst. When spans is not nil
// it records, for each part, where it starts in the output (to map a JSON
// error's offset back into the template).
func (t *template) render(dst []byte, v *Values, spans *[]int) []byte {
	for _, p := range t.parts {
		if spans != nil {
			*spans = append(*spans, len(dst))
		}
		if !p.isPh {
			dst = append(dst, p.lit...)
			continue
		}
		if p.ph.isNumber() {
			dst = appendNumber(dst, p.ph, v)
			continue
		}
		str := stringValue(p.ph, v)
		switch {
		case !t.json:
			dst = append(dst, str...)
		case p.inString:
			dst = appendEscaped(dst, str)
		default:
			dst = append(dst, '"')
			dst = appendEscaped(dst, str)
			dst = append(dst, '"')
		}
	}
	return dst
}

// sourceOffset maps an offset in a rendered output back to the template:
// inside a literal exactly, inside a placeholder to the placeholder.
func (t *template) sourceOffset(spans []int, out int) int {
	for i := len(spans) - 1; i >= 0; i-- {
		if out >= spans[i] {
			p := t.parts[i]
			if p.isPh {
				return p.off
			}
			return p.off + min(out-spans[i], len(p.lit))
		}
	}
	return 0
}

func appendNumber(dst []byte, p placeholder, v *Values) []byte {
	switch p {
	case phIndex:
		return strconv.AppendInt(dst, int64(v.Index), 10)
	case phSenderSeq:
		return strconv.AppendUint(dst, v.SenderSeq, 10)
	case phSendTime:
		return strconv.AppendInt(dst, v.SendTimeUnixNano, 10)
	case phResumeSeq:
		return strconv.AppendUint(dst, v.ResumeSeq, 10)
	}
	return dst
}

func stringValue(p placeholder, v *Values) string {
	switch p {
	case phRoom:
		return v.Room
	case phBody:
		return v.Body
	case phClientMsgID:
		return v.ClientMsgID
	case phClient:
		return v.Client
	case phSession:
		return v.Session
	case phToken:
		return v.Token
	}
	return ""
}

// appendEscaped appends s as the inside of a JSON string.
func appendEscaped(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}

// String renders the template with v, for messages and tests.
func (t *template) String(v Values) string { return string(t.render(nil, &v, nil)) }
