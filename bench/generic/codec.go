package generic

import (
	"fmt"

	"google.golang.org/grpc/mem"
)

// wire is a request already encoded as protobuf: the driver encodes its
// messages once (per call or per message only when the data is a template)
// and the codec hands the bytes to gRPC as they are.
type wire []byte

// discard is what a response is read into: nothing. The driver times a
// response's arrival and never looks inside, so it is not decoded (nor
// copied out of gRPC's buffers).
type discard struct{}

// rawCodec passes wire bytes through and drops responses. Its name is
// "proto", so the content type stays application/grpc+proto and the
// server sees an ordinary protobuf call.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

// Marshal returns the bytes without a copy: gRPC only reads them (and frees
// a SliceBuffer by doing nothing), so every stream may share one message.
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	w, ok := v.(wire)
	if !ok {
		return nil, fmt.Errorf("generic driver codec: cannot send %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(w)}, nil
}

func (rawCodec) Unmarshal(_ mem.BufferSlice, v any) error {
	if _, ok := v.(*discard); !ok {
		return fmt.Errorf("generic driver codec: cannot receive into %T", v)
	}
	return nil
}
