package dhcpsrv

import "golang.org/x/sys/unix"

// bindToDeviceSupported says whether Server.Interface can be honoured.
const bindToDeviceSupported = true

// bindToDevice restricts socket fd to network interface iface
// (SO_BINDTODEVICE).
func bindToDevice(fd int, iface string) error {
	return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface)
}
