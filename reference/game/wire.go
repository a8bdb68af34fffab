package game

// rawMessage is a message the gRPC proto codec passes through undecoded: it
// implements the legacy Marshal/Unmarshal methods that protobuf-go honours.
// Play receives ClientEvents as rawMessage and decodes them itself, so that an
// undecodable message ends the stream with INVALID_ARGUMENT (the codec's own
// failure would be answered with INTERNAL before the handler could object).
type rawMessage struct{ b []byte }

func (*rawMessage) Reset()         {}
func (*rawMessage) String() string { return "rawMessage" }
func (*rawMessage) ProtoMessage()  {}

// Unmarshal keeps a copy of b (the codec reuses its buffer).
func (m *rawMessage) Unmarshal(b []byte) error {
	m.b = append(m.b[:0], b...)
	return nil
}

// Marshal returns the bytes as they are.
func (m *rawMessage) Marshal() ([]byte, error) { return m.b, nil }
