package protocol

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/dynamicpb"
)

// bufPool holds render buffers; Encode takes one per call and returns it.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Encode renders the outgoing message name (OutJoin, OutResume, OutLeave,
// OutSend or an extra's name) with v and decodes it into a new client
// message. A name the mapping does not define is an error for which
// IsNotMapped is true.
func (m *Mapping) Encode(name string, v Values) (*dynamicpb.Message, error) {
	o := m.outgoing[name]
	if o == nil {
		return nil, fmt.Errorf("protocol.%s: %w", Out(name), errNotMapped)
	}
	bp := bufPool.Get().(*[]byte)
	buf := o.tmpl.render((*bp)[:0], &v, nil)
	msg := m.msgType.New().Interface().(*dynamicpb.Message)
	err := m.encode.Unmarshal(buf, msg)
	if err != nil {
		err = fmt.Errorf("%s: protocol.%s rendered %s: %w", m.file, o.path, buf, err)
	}
	*bp = buf
	bufPool.Put(bp)
	if err != nil {
		return nil, err
	}
	return msg, nil
}

// Metadata renders the mapping's request metadata with v ({{token}},
// {{client}}, {{session}}); nil when the mapping has none.
func (m *Mapping) Metadata(v Values) metadata.MD {
	if len(m.metadata) == 0 {
		return nil
	}
	md := make(metadata.MD, len(m.metadata))
	for _, e := range m.metadata {
		md.Append(e.key, e.tmpl.String(v))
	}
	return md
}
