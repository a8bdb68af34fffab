//go:build !unix

package readyread

import "errors"

// rawReadSupported: elsewhere Read falls back to a blocking Read into a
// pool buffer.
const rawReadSupported = false

func sysRead(uintptr, []byte) (int, error) {
	return 0, errors.New("readyread: raw reads are unix only")
}

func wouldBlock(error) bool { return false }
