package engine

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec passCodec wraps
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/bidikit/bidikit/internal/readyread"
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
	if b, ok := v.([]byte); ok {
		v = rawMessage(b) // a driver's raw bytes (Stream.Send)
	}
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

// conn is one gRPC channel shared by up to StreamsPerConn clients: a
// manual resolver holding the targets in this conn's order and grpc-go's
// pick_first policy, so at most one TCP connection is in use and a lost one
// is replaced by the first target that answers. The dialer records every
// TCP connection it made until gRPC closes it, so AbruptClose can close it
// under gRPC's feet and Connect events can name the target reached. Fields
// after mu are guarded by it.
type conn struct {
	cc *grpc.ClientConn

	mu   sync.Mutex
	live []*trackedConn // open TCP connections, oldest first
	refs int
}

// trackedConn is one TCP connection a conn's dialer made to target; Close
// removes it from the conn's live list. Its reads pin no buffer while they
// wait (ReadOnReady): embedding net.Conn hides the *net.TCPConn grpc-go
// would otherwise read that way, and each idle client connection would hold
// its own clientReadBuffer.
type trackedConn struct {
	net.Conn
	c      *conn
	target string
	once   sync.Once
	rr     readyread.Reader // owned by grpc-go's reader goroutine
}

var _ readyread.ReadyReader = (*trackedConn)(nil)

// ReadOnReady reads for grpc-go into a pool buffer taken once bytes are
// there (readyread.ReadyReader). Faults act on the embedded connection as
// before: closeRaw's RST and Close end a waiting read with an error.
func (t *trackedConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	return readyread.Read(t.Conn, &t.rr, bufSize, pool)
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.c.mu.Lock()
		t.c.live = slices.DeleteFunc(t.c.live, func(x *trackedConn) bool { return x == t })
		t.c.mu.Unlock()
	})
	return t.Conn.Close()
}

// closeRaw closes the open TCP connections without any gRPC goodbye.
func (c *conn) closeRaw() {
	c.mu.Lock()
	live := slices.Clone(c.live)
	c.mu.Unlock()
	for _, raw := range live {
		if tc, ok := raw.Conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN: the peer gets no goodbye at all
		}
		_ = raw.Close()
	}
}

// target is the address of the conn's newest open TCP connection ("" when
// none is open): the one pick_first uses, as it keeps one at a time.
func (c *conn) target() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.live) == 0 {
		return ""
	}
	return c.live[len(c.live)-1].target
}

// clientReadBuffer is the size of the read buffer a virtual client
// connection borrows from grpc-go's pool while read bytes wait to be parsed
// (trackedConn.ReadOnReady); an idle connection holds none.
const clientReadBuffer = 8 << 10

// resolverScheme names the per-conn manual resolver (registered on each
// ClientConn only, through grpc.WithResolvers).
const resolverScheme = "bidikit"

// pickFirst is the service config every conn uses: grpc-go's pick_first
// tries the addresses in order and uses the first that connects.
const pickFirst = `{"loadBalancingConfig":[{"pick_first":{}}]}`

// dial returns a new conn to targets, in failover order (lazy: TCP is
// opened by the first stream).
func dial(targets []string, o *options) (*conn, error) {
	c := &conn{}
	var d net.Dialer
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	if o.creds != nil {
		creds = grpc.WithTransportCredentials(o.creds)
	}
	eps := make([]resolver.Endpoint, len(targets))
	for i, t := range targets {
		// ServerName = the address, as the passthrough resolver would
		// give: it is each connection's :authority and TLS server name
		// (unless the TLS config names one).
		eps[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: t, ServerName: t}}}
	}
	res := manual.NewBuilderWithScheme(resolverScheme)
	res.InitialState(resolver.State{Endpoints: eps})
	cc, err := grpc.NewClient(resolverScheme+":///"+targets[0], creds,
		grpc.WithResolvers(res),
		grpc.WithDefaultServiceConfig(pickFirst),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			t := &trackedConn{Conn: nc, c: c, target: a}
			c.mu.Lock()
			c.live = append(c.live, t)
			c.mu.Unlock()
			return t, nil
		}),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newPassCodec())),
		// Thousands of mostly idle connections: small read buffers and
		// write buffers shared between connections (held only while
		// writing) instead of grpc-go's 32 KiB + 32 KiB per connection.
		grpc.WithReadBufferSize(clientReadBuffer),
		grpc.WithSharedWriteBuffer(true),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", strings.Join(targets, ","), err)
	}
	c.cc = cc
	return c, nil
}

// rotate returns targets starting at element k mod len(targets), wrapping
// around (a new slice; targets is not modified).
func rotate(targets []string, k int) []string {
	n := len(targets)
	k %= n
	return append(slices.Clone(targets[k:]), targets[:k]...)
}

// pool hands out shared conns: clients i*k .. i*k+k-1 share conn i when
// StreamsPerConn is k, and conn i dials the targets rotated by i (one
// rotation per conn, so conns spread evenly over the targets). A conn is
// closed when its last client releases it.
type pool struct {
	targets []string
	opts    *options
	per     int

	mu    sync.Mutex
	conns map[int]*conn
}

func newPool(targets []string, per int, o *options) *pool {
	return &pool{targets: targets, opts: o, per: max(per, 1), conns: map[int]*conn{}}
}

// targetsFor is client idx's target list: its conn's rotation.
func (p *pool) targetsFor(idx int) []string { return rotate(p.targets, idx/p.per) }

// get returns client idx's shared conn, dialling it on first use.
func (p *pool) get(idx int) (*conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := idx / p.per
	if c, ok := p.conns[g]; ok {
		c.refs++
		return c, nil
	}
	c, err := dial(p.targetsFor(idx), p.opts)
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
