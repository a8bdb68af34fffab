package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"time"
)

// mismatch is what a TLS/plaintext mismatch looks like from one side.
type mismatch int

const (
	noMismatch mismatch = iota
	tlsToPlain          // bidikit dialed TLS; the target speaks plaintext
	plainToTLS          // bidikit dialed plaintext; the target wants TLS
)

// Bounds of diagnose's own questions to the targets.
const (
	sniffTimeout    = 2 * time.Second
	sniffMaxTargets = 4
)

// Fix is the hint for m: what the target speaks and the flag to change.
func (m mismatch) Fix() string {
	switch m {
	case tlsToPlain:
		return "the target speaks plaintext gRPC but bidikit dialed it with TLS (a --tls* flag was given): drop the --tls* flags, or give --insecure, to dial it in plaintext"
	case plainToTLS:
		return "the target expects TLS but bidikit dialed it in plaintext (the default): give --tls-ca FILE with the CA that signed its certificate, --tls to verify it against the system's roots, or --tls-skip-verify to not verify it"
	}
	return ""
}

// mismatchFromText reads a mismatch off grpc's error text, when the error
// carries the transport's own words (the engine's preflight does).
func mismatchFromText(msg string, usedTLS bool) mismatch {
	switch {
	case usedTLS && strings.Contains(msg, "first record does not look like a TLS handshake"):
		return tlsToPlain
	case !usedTLS && (strings.Contains(msg, "http2: frame too large") ||
		strings.Contains(msg, "connection closed before server preface received") ||
		strings.Contains(msg, "error reading server preface")):
		return plainToTLS
	}
	return noMismatch
}

// sniff asks target directly which it speaks: a TLS handshake that
// completes means TLS; a reply that is not a TLS record (a plaintext HTTP/2
// server sends its SETTINGS frame first) means plaintext. Anything else
// (refused, silent, reset) tells nothing.
func sniff(ctx context.Context, target string) (isTLS, isPlain bool) {
	ctx, cancel := context.WithTimeout(ctx, sniffTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return false, false
	}
	defer raw.Close()
	host, _, _ := net.SplitHostPort(target)
	c := tls.Client(raw, &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // only asks which protocol the port speaks
	err = c.HandshakeContext(ctx)
	if err == nil {
		return true, false
	}
	var rh tls.RecordHeaderError
	return false, errors.As(err, &rh)
}

// diagnose finds a TLS/plaintext mismatch behind err (a target that did
// not answer): from err's text, else by asking the targets themselves
// (the first few, sniffTimeout each at most).
func diagnose(ctx context.Context, err error, targets []string, usedTLS bool) mismatch {
	if err == nil {
		return noMismatch
	}
	msg := err.Error()
	if m := mismatchFromText(msg, usedTLS); m != noMismatch {
		return m
	}
	if strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") {
		return noMismatch // nothing listens there: nothing to ask
	}
	for i, t := range targets {
		if i == sniffMaxTargets || ctx.Err() != nil {
			break
		}
		isTLS, isPlain := sniff(ctx, t)
		switch {
		case usedTLS && isPlain:
			return tlsToPlain
		case !usedTLS && isTLS:
			return plainToTLS
		}
	}
	return noMismatch
}

// mismatchError is an unreachable-target error with the mismatch that
// explains it.
type mismatchError struct {
	err error
	m   mismatch
}

func (e *mismatchError) Error() string { return e.err.Error() + "; " + e.m.Fix() }
func (e *mismatchError) Unwrap() error { return e.err }

// explain returns err with the mismatch that explains it, if one does.
func explain(ctx context.Context, err error, targets []string, usedTLS bool) error {
	if m := diagnose(ctx, err, targets, usedTLS); m != noMismatch {
		return &mismatchError{err: err, m: m}
	}
	return err
}
