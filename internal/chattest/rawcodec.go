package chattest

import "fmt"

// RawCodec is a gRPC codec named "proto" that carries raw bytes: Marshal
// takes []byte or *[]byte, Unmarshal fills a *[]byte. A spec sends or
// serves bytes no generated message would (bad input, fuzzing, a server
// that garbles its answers) with grpc.ForceCodec or grpc.ForceServerCodec.
type RawCodec struct{}

// Marshal implements encoding.Codec.
func (RawCodec) Marshal(v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case *[]byte:
		return *b, nil
	}
	return nil, fmt.Errorf("chattest.RawCodec: cannot marshal %T, want []byte", v)
}

// Unmarshal implements encoding.Codec.
func (RawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("chattest.RawCodec: cannot unmarshal into %T, want *[]byte", v)
	}
	*p = append((*p)[:0], data...)
	return nil
}

// Name implements encoding.Codec.
func (RawCodec) Name() string { return "proto" }
