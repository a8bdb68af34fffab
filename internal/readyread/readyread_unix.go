//go:build unix

package readyread

import "syscall"

// rawReadSupported: the descriptor of a TCP or Unix connection can be read
// directly (Read).
const rawReadSupported = true

// sysRead reads fd once, retrying EINTR. It uses package syscall, as the
// net package's own reads do (the race detector sees them alike).
func sysRead(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// wouldBlock reports a read that found no data yet.
func wouldBlock(err error) bool { return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK }
