package generic

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bidikit/bidikit/harness/protocol"
)

// resolveMethod finds c.Call's descriptor through harness/protocol: the
// --proto sources compiled at run time, the --protoset, or else the
// target's server reflection over cc (with ReflectMetadata, else Metadata,
// on the request), within the dial timeout. Every error is a usage error
// starting "--call CALL:" and says what was wrong (an unknown service or
// method, with the ones there are; a method that is not bidi streaming).
func resolveMethod(ctx context.Context, c Config, cc *grpc.ClientConn) (protoreflect.MethodDescriptor, error) {
	var (
		d   *protocol.Descriptors
		err error
	)
	switch {
	case c.Proto != "":
		d, err = protocol.CompileProtos(ctx, c.ImportPaths, []string{c.Proto})
	case c.Protoset != "":
		d, err = protocol.LoadProtoset(c.Protoset)
	default:
		rctx, cancel := context.WithTimeout(ctx, c.DialTimeout)
		defer cancel()
		md := c.ReflectMetadata
		if md == nil {
			md, err = decodeMetadata([]byte(orEmptyObject(c.Metadata)))
			if err != nil {
				md = nil // a template: reflection goes without it
			}
		}
		if len(md) > 0 {
			rctx = metadata.NewOutgoingContext(rctx, metadata.New(md))
		}
		svc, _ := splitCall(c.Call)
		d, err = protocol.Reflect(rctx, cc, c.Target, svc)
		if err != nil {
			err = fmt.Errorf("%w (use --proto or --protoset when the server has no reflection)", err)
		}
	}
	if err != nil {
		return nil, usagef("--call %s: %v", c.Call, err)
	}
	md, err := d.Method(c.Call)
	if err != nil {
		return nil, usagef("--call %s: %v", c.Call, err)
	}
	return md, nil
}

func orEmptyObject(s string) string {
	if s == "" {
		return "{}"
	}
	return s
}

// splitCall reads "pkg.Svc/Method" or "pkg.Svc.Method".
func splitCall(call string) (svc, method string) {
	for i := len(call) - 1; i >= 0; i-- {
		if call[i] == '/' || call[i] == '.' {
			return call[:i], call[i+1:]
		}
	}
	return call, ""
}
