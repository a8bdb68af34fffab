package generic

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	channelzpb "google.golang.org/grpc/channelz/grpc_channelz_v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Load is what a server holds open, from channelz: server sockets
// (connections) and streams started but not yet ended on them.
type Load struct {
	Sockets, Streams int64
}

func (l Load) String() string { return fmt.Sprintf("%d sockets, %d streams", l.Sockets, l.Streams) }

// ErrNoChannelz says the target does not serve channelz.
var ErrNoChannelz = fmt.Errorf("target does not serve channelz (grpc.channelz.v1.Channelz)")

// ReadLoad asks the target's channelz (over cc) for its open sockets and
// active streams over every server it reports (paged, bounded).
func ReadLoad(ctx context.Context, cc *grpc.ClientConn) (Load, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cz := channelzpb.NewChannelzClient(cc)
	var l Load
	srvs, err := cz.GetServers(ctx, &channelzpb.GetServersRequest{})
	if status.Code(err) == codes.Unimplemented {
		return l, ErrNoChannelz
	}
	if err != nil {
		return l, fmt.Errorf("channelz GetServers: %w", err)
	}
	for _, s := range srvs.Server {
		start := int64(0)
		for page := 0; page < 1000; page++ {
			resp, err := cz.GetServerSockets(ctx, &channelzpb.GetServerSocketsRequest{ServerId: s.Ref.ServerId, StartSocketId: start})
			if err != nil {
				return l, fmt.Errorf("channelz GetServerSockets: %w", err)
			}
			for _, ref := range resp.SocketRef {
				l.Sockets++
				start = ref.SocketId + 1
				sk, err := cz.GetSocket(ctx, &channelzpb.GetSocketRequest{SocketId: ref.SocketId})
				if err != nil {
					continue // closed meanwhile
				}
				if d := sk.GetSocket().GetData(); d != nil {
					l.Streams += d.StreamsStarted - d.StreamsSucceeded - d.StreamsFailed
				}
			}
			if resp.End || len(resp.SocketRef) == 0 {
				break
			}
		}
	}
	return l, nil
}

// LeakVerdict waits up to settle for the target's load to return to
// baseline and says whether it did. ok is false with a message naming what
// stayed open.
func LeakVerdict(ctx context.Context, cc *grpc.ClientConn, baseline Load, settle time.Duration) (ok bool, msg string, err error) {
	deadline := time.Now().Add(settle)
	var last Load
	for {
		last, err = ReadLoad(ctx, cc)
		if err != nil {
			return false, "", err
		}
		if last.Sockets <= baseline.Sockets && last.Streams <= baseline.Streams {
			return true, fmt.Sprintf("no leak: channelz back to baseline (%s)", last), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false, fmt.Sprintf("LEAK: %v after the run the target still holds %s, baseline %s", settle, last, baseline), nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
