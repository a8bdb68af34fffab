//go:build !unix

package reference

import "errors"

// rawReadSupported: elsewhere rawRead falls back to a blocking Read into a
// pool buffer.
const rawReadSupported = false

func sysRead(uintptr, []byte) (int, error) {
	return 0, errors.New("reference: raw reads are unix only")
}

func wouldBlock(error) bool { return false }
