// Package auth turns the "authorization: Bearer <token>" metadata of a gRPC
// call into a user id, and rejects calls without one with UNAUTHENTICATED.
package auth

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Authenticator maps a bearer token to a user id. Implementations are safe for
// concurrent use and never block.
type Authenticator interface {
	// Authenticate returns the user id for token, or ok=false.
	Authenticate(token string) (user string, ok bool)
}

// Tokens is an Authenticator over a fixed token -> user table.
type Tokens map[string]string

// Authenticate implements Authenticator.
func (t Tokens) Authenticate(token string) (string, bool) {
	u, ok := t[token]
	return u, ok
}

// DevMode is the local development Authenticator: any non-empty token is
// accepted as the user id itself. Never use it on a shared network.
type DevMode struct{}

// Authenticate implements Authenticator.
func (DevMode) Authenticate(token string) (string, bool) {
	if token == "" || len(token) > MaxUserLen {
		return "", false
	}
	return token, true
}

// MaxUserLen bounds user ids accepted in DevMode and in token files.
const MaxUserLen = 128

// LoadTokens reads a token file: one "TOKEN USER" pair a line, blank lines and
// lines starting with # ignored. Errors name the file and line.
func LoadTokens(path string) (Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	t := Tokens{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"TOKEN USER\", got %d fields", path, line, len(fields))
		}
		if len(fields[1]) > MaxUserLen {
			return nil, fmt.Errorf("%s:%d: user id longer than %d bytes", path, line, MaxUserLen)
		}
		if _, dup := t[fields[0]]; dup {
			return nil, fmt.Errorf("%s:%d: token listed twice", path, line)
		}
		t[fields[0]] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(t) == 0 {
		return nil, fmt.Errorf("%s: no tokens", path)
	}
	return t, nil
}

type userKey struct{}

// WithUser returns ctx carrying the authenticated user id.
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, user)
}

// UserFrom returns the user id the interceptor put in ctx.
func UserFrom(ctx context.Context) (string, bool) {
	u, ok := ctx.Value(userKey{}).(string)
	return u, ok
}

// Authenticate reads the bearer token from ctx's incoming metadata.
func Authenticate(ctx context.Context, a Authenticator) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, "missing \"authorization: Bearer <token>\" metadata")
	}
	token, found := strings.CutPrefix(vals[0], "Bearer ")
	if !found {
		return "", status.Error(codes.Unauthenticated, "authorization metadata must be \"Bearer <token>\"")
	}
	user, ok := a.Authenticate(strings.TrimSpace(token))
	if !ok {
		return "", status.Error(codes.Unauthenticated, "unknown bearer token")
	}
	return user, nil
}

// Exempt reports whether a full method name needs no token (health checks,
// reflection, channelz: operational endpoints on the same port).
func Exempt(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.") ||
		strings.HasPrefix(fullMethod, "/grpc.channelz.")
}

// StreamInterceptor authenticates every non-exempt stream and puts the user id
// into the stream's context.
func StreamInterceptor(a Authenticator) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if Exempt(info.FullMethod) {
			return handler(srv, ss)
		}
		user, err := Authenticate(ss.Context(), a)
		if err != nil {
			return err
		}
		return handler(srv, &userStream{ServerStream: ss, ctx: WithUser(ss.Context(), user)})
	}
}

// UnaryInterceptor authenticates every non-exempt unary call.
func UnaryInterceptor(a Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if Exempt(info.FullMethod) {
			return handler(ctx, req)
		}
		user, err := Authenticate(ctx, a)
		if err != nil {
			return nil, err
		}
		return handler(WithUser(ctx, user), req)
	}
}

type userStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *userStream) Context() context.Context { return s.ctx }
