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

// Connected is a connected UDP socket (see udp_raw.go); here Read and
// Send are net.UDPConn's Read and Write.
type Connected struct{ c *net.UDPConn }

// NewConnected wraps c, which must be connected (net.DialUDP).
func NewConnected(c *net.UDPConn) (*Connected, error) { return &Connected{c: c}, nil }

// Conn returns the wrapped socket (for deadlines and Close).
func (c *Connected) Conn() *net.UDPConn { return c.c }

// Read reads one datagram into b.
func (c *Connected) Read(b []byte) (int, error) { return c.c.Read(b) }

// Send sends each packet as one datagram, in order.
func (c *Connected) Send(pkts [][]byte) error {
	for _, p := range pkts {
		if _, err := c.c.Write(p); err != nil {
			return err
		}
	}
	return nil
}
