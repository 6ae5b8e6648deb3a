//go:build !(linux && (amd64 || arm64))

package sockets

import (
	"net"
)

// RawUDP reports whether ServeUDP works here.
const RawUDP = false

// ServeUDP is the read loop of Linux on amd64 and arm64 (see udp_raw.go); here ok
// is false and the caller uses its portable loop.
func ServeUDP(c *net.UDPConn, size int, handle Handler, sendErr func(error)) (ok bool, err error) {
	return false, nil
}
