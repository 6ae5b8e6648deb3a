package dhcpsrv

import (
	"os"
	"syscall"
	"unsafe"
)

// writeAll writes data to the journal file f with raw write(2) calls.
//
// os.File.Write enters the Go scheduler's syscall state, and the first
// syscall after every P went idle wakes the runtime's sysmon thread, which
// then spins down again: on a DHCP server answering a packet every few
// milliseconds that is two futex calls, two nanosleeps and their context
// switches per ACK, more CPU than the ACK itself (measured with strace -c
// under perfdhcp at 250 DORA/s). A write of one journal record goes to the
// page cache and returns in microseconds, so it holds its P for that long
// and no more; the fsync, which can take milliseconds, stays an ordinary
// syscall (f.Sync).
func writeAll(f *os.File, data []byte) error {
	fd := f.Fd()
	for len(data) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)))
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return &os.PathError{Op: "write", Path: f.Name(), Err: e}
		case n == 0:
			return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.EIO}
		}
		data = data[n:]
	}
	return nil
}
