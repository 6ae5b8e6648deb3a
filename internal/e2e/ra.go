//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// RouterAdvertisementPacket is an ICMPv6 router advertisement (type 134)
// with router lifetime 0 (not a default router), no M/O flags and no
// options. The checksum is left zero: the kernel fills it in on raw ICMPv6
// sockets.
var RouterAdvertisementPacket = []byte{
	134, 0, 0, 0, // type, code, checksum
	64, 0, 0, 0, // cur hop limit, flags, router lifetime
	0, 0, 0, 0, // reachable time
	0, 0, 0, 0, // retrans timer
}

// RASocket is a raw ICMPv6 socket opened by [OpenRASocket].
type RASocket struct {
	fd      int
	ifindex int
}

// SendRouterAdvertisements multicasts [RouterAdvertisementPacket] to
// ff02::1 on the socket's interface every interval until ctx ends. It exists to
// make iPXE's IPv6 autoconfiguration finish at once (it otherwise waits about
// 15 s for a router before trying DHCPv4 boot). Call it from a goroutine
// with a socket made inside the test namespace: open the socket with
// [OpenRASocket] inside netns.NS.Do. The socket is closed on return. Send errors (e.g. while the interface
// has no link-local address yet) are ignored; it returns the number of
// advertisements sent.
func SendRouterAdvertisements(ctx context.Context, s RASocket, interval time.Duration) int {
	fd := s.fd
	defer unix.Close(fd)
	dst := &unix.SockaddrInet6{Addr: [16]byte{0: 0xff, 1: 0x02, 15: 0x01}, ZoneId: uint32(s.ifindex)}
	sent := 0
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := unix.Sendto(fd, RouterAdvertisementPacket, 0, dst); err == nil {
			sent++
		}
		select {
		case <-ctx.Done():
			return sent
		case <-t.C:
		}
	}
}

// OpenRASocket opens a raw ICMPv6 socket bound to ifname with hop limit 255
// (required for neighbour discovery). Call it inside the namespace (the
// socket stays there); pass the descriptor to [SendRouterAdvertisements].
func OpenRASocket(ifname string) (RASocket, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return RASocket{}, fmt.Errorf("e2e: raw icmpv6 socket: %w", err)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		unix.Close(fd)
		return RASocket{}, fmt.Errorf("e2e: %w", err)
	}
	for _, o := range []struct{ opt, val int }{
		{unix.IPV6_MULTICAST_HOPS, 255},
		{unix.IPV6_UNICAST_HOPS, 255},
		{unix.IPV6_MULTICAST_IF, ifi.Index},
	} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, o.opt, o.val); err != nil {
			unix.Close(fd)
			return RASocket{}, fmt.Errorf("e2e: setsockopt %d: %w", o.opt, err)
		}
	}
	if err := unix.BindToDevice(fd, ifname); err != nil {
		unix.Close(fd)
		return RASocket{}, fmt.Errorf("e2e: bind to %s: %w", ifname, err)
	}
	return RASocket{fd: fd, ifindex: ifi.Index}, nil
}
