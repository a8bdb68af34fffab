package h2attack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// ErrRemoteTarget is wrapped by the error an attack returns for a target
// that is not a loopback address while Target.AllowRemote is not set.
var ErrRemoteTarget = errors.New("refusing to attack a target that is not a loopback address")

// resolve checks t's host and returns the address to dial: the host's
// loopback address (a name is resolved once, here, and every connection
// dials what was checked), or t.Addr as given when AllowRemote is set.
// Loopback is 127.0.0.0/8 and ::1.
func resolve(ctx context.Context, t Target) (string, error) {
	host, port, err := net.SplitHostPort(t.Addr)
	if err != nil {
		return "", fmt.Errorf("h2attack: target %q: %v; want host:port (e.g. 127.0.0.1:7070)", t.Addr, err)
	}
	if port == "" {
		return "", fmt.Errorf("h2attack: target %q: missing port; want host:port", t.Addr)
	}
	if t.AllowRemote {
		return t.Addr, nil
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		if !ip.IsLoopback() {
			return "", fmt.Errorf("h2attack: target %s: %w (127.0.0.0/8, ::1); attack only your own servers, and allow a remote one explicitly (--allow-remote-attacks)", t.Addr, ErrRemoteTarget)
		}
		return net.JoinHostPort(ip.String(), port), nil
	}
	if host == "" {
		return "", fmt.Errorf("h2attack: target %q: empty host; want a loopback address such as 127.0.0.1", t.Addr)
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return "", fmt.Errorf("h2attack: target %s: resolving %q: %w", t.Addr, host, err)
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("h2attack: target %s: %q resolves to no address", t.Addr, host)
	}
	for _, a := range ips {
		if !a.IP.IsLoopback() {
			return "", fmt.Errorf("h2attack: target %s: %q resolves to %s: %w (127.0.0.0/8, ::1); allow a remote target explicitly (--allow-remote-attacks)", t.Addr, host, a.IP, ErrRemoteTarget)
		}
	}
	return net.JoinHostPort(ips[0].IP.String(), port), nil
}

// CheckTarget reports whether t may be attacked (see Target.AllowRemote)
// without connecting: a caller checks before anything starts.
func CheckTarget(ctx context.Context, t Target) error {
	_, err := resolve(ctx, t)
	return err
}
