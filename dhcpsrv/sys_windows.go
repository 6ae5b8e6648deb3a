//go:build windows

package dhcpsrv

import (
	"os"
	"syscall"

	"golang.org/x/sys/windows"
)

// setSockoptInt turns on the SOL_SOCKET option opt of socket fd.
func setSockoptInt(fd uintptr, opt int) error {
	return syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, opt, 1)
}

// lockFile takes an exclusive, non-blocking lock on f (LockFileEx): a
// second process opening the same journal fails instead of corrupting it.
func lockFile(f *os.File) error {
	var ol windows.Overlapped
	return windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
}
