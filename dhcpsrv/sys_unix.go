//go:build unix

package dhcpsrv

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// setSockoptInt turns on the SOL_SOCKET option opt of socket fd.
func setSockoptInt(fd uintptr, opt int) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 1)
}

// lockFile takes an exclusive, non-blocking lock on f (flock): a second
// process opening the same journal fails instead of corrupting it.
func lockFile(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
}
