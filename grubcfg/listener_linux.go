package grubcfg

import (
	"net"

	"golang.org/x/sys/unix"
)

// unsent returns the bytes in the socket's send queue not yet acknowledged
// by the peer (SIOCOUTQ), 0 on error.
func unsent(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		if err == nil {
			n = v
		}
	})
	return n
}
