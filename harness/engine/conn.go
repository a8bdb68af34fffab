package engine

import (
	"context"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec passCodec wraps
	"google.golang.org/grpc/mem"
)

// rawMessage is sent as is, bypassing protobuf marshalling: how the
// malformed-sender and the SendMalformed fault put undecodable bytes on a
// stream.
type rawMessage []byte

// passCodec is the proto codec, except that a rawMessage is written verbatim.
// It keeps the name "proto" so the content-subtype on the wire is unchanged.
type passCodec struct{ proto encoding.CodecV2 }

func newPassCodec() passCodec { return passCodec{proto: encoding.GetCodecV2("proto")} }

func (c passCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	return c.proto.Marshal(v)
}

func (c passCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }
func (passCodec) Name() string                                  { return "proto" }

// malformedBytes is not a valid protobuf message: a length-delimited field 1
// that claims 16 bytes and carries 1.
var malformedBytes = []byte{0x0a, 0x10, 'x'}

// conn is one TCP connection shared by up to StreamsPerConn clients. The
// dialer keeps the net.Conn it made last, so AbruptClose can close it under
// gRPC's feet. Fields after mu are guarded by it.
type conn struct {
	cc *grpc.ClientConn

	mu   sync.Mutex
	raw  net.Conn
	refs int
}

// closeRaw closes the current TCP connection without any gRPC goodbye.
func (c *conn) closeRaw() {
	c.mu.Lock()
	raw := c.raw
	c.mu.Unlock()
	if raw != nil {
		if tc, ok := raw.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN: the peer gets no goodbye at all
		}
		_ = raw.Close()
	}
}

// clientReadBuffer is each virtual client connection's read buffer.
const clientReadBuffer = 8 << 10

// dial returns a new conn to addr (lazy: TCP is opened by the first stream).
func dial(addr string, o *options) (*conn, error) {
	c := &conn{}
	var d net.Dialer
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	if o.creds != nil {
		creds = grpc.WithTransportCredentials(o.creds)
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, creds,
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			c.raw = nc
			c.mu.Unlock()
			return nc, nil
		}),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newPassCodec())),
		// Thousands of mostly idle connections: small read buffers and
		// write buffers shared between connections (held only while
		// writing) instead of grpc-go's 32 KiB + 32 KiB per connection.
		grpc.WithReadBufferSize(clientReadBuffer),
		grpc.WithSharedWriteBuffer(true),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	c.cc = cc
	return c, nil
}

// pool hands out shared conns: clients i*k .. i*k+k-1 share conn i when
// StreamsPerConn is k. A conn is closed when its last client releases it.
type pool struct {
	addr string
	opts *options
	per  int

	mu    sync.Mutex
	conns map[int]*conn
}

func newPool(addr string, per int, o *options) *pool {
	return &pool{addr: addr, opts: o, per: max(per, 1), conns: map[int]*conn{}}
}

// get returns client idx's shared conn, dialling it on first use.
func (p *pool) get(idx int) (*conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := idx / p.per
	if c, ok := p.conns[g]; ok {
		c.refs++
		return c, nil
	}
	c, err := dial(p.addr, p.opts)
	if err != nil {
		return nil, err
	}
	c.refs = 1
	p.conns[g] = c
	return c, nil
}

// release drops client idx's reference; the last one closes the conn.
func (p *pool) release(idx int) {
	p.mu.Lock()
	g := idx / p.per
	c, ok := p.conns[g]
	if ok {
		c.refs--
		if c.refs == 0 {
			delete(p.conns, g)
		} else {
			c = nil
		}
	}
	p.mu.Unlock()
	if ok && c != nil {
		_ = c.cc.Close()
	}
}

// closeAll closes whatever is still open (run teardown).
func (p *pool) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[int]*conn{}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.cc.Close()
	}
}
