//go:build !linux

package dhcpsrv

import (
	"errors"
	"fmt"
)

// bindToDeviceSupported says whether Server.Interface can be honoured:
// not here (Server.Validate reports it).
const bindToDeviceSupported = false

// bindToDevice fails: binding a socket to an interface by name
// (SO_BINDTODEVICE) is Linux's, and a DHCP server listening on every
// interface could answer on the wrong network.
func bindToDevice(_ int, iface string) error {
	return fmt.Errorf("dhcpsrv: interface %s: %w", iface, errors.ErrUnsupported)
}
