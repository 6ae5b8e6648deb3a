package dhcpsrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv6"

	"github.com/metalboot/metalboot/internal/sockets"
)

// RouterAdvertiser ends network-boot firmware's wait for an IPv6 router on
// an IPv4-only segment. iPXE (QEMU's and many hypervisors' NIC option ROM,
// and every machine chainloaded into iPXE) starts IPv6 autoconfiguration
// beside DHCPv4 and, when no router answers its router solicitations,
// waits about 15 s before it boots: on a lab without an IPv6 router every
// iPXE boot takes that much longer. RouterAdvertiser answers each router
// solicitation on Interface with the smallest router advertisement there
// is: router lifetime 0 (not a default router), no M or O flag (no
// DHCPv6), hop limit and timers unspecified, no options (no prefix, so no
// address is configured). Hosts learn nothing from it except that the
// answer has come.
//
// It is safe on the network it runs on: it only answers solicitations
// (never advertises on its own), only on Interface, and it falls silent
// for SilenceAfterRouter once it hears another router's advertisement on
// the segment, so a lab with a real IPv6 router is left to that router.
//
// It follows the module's server contract (see the package doc of
// github.com/metalboot/metalboot): Validate, Listen, Serve, ListenAndServe.
// Listening needs a raw ICMPv6 socket (root or CAP_NET_RAW) and, to stay
// on one interface, Linux (SO_BINDTODEVICE).
type RouterAdvertiser struct {
	// Interface is the segment to answer on; required.
	Interface string
	// SilenceAfterRouter is how long it stays silent after hearing
	// another router's advertisement; zero means
	// DefaultSilenceAfterRouter, negative is a Validate error.
	SilenceAfterRouter time.Duration
	// Logger receives what it does; nil discards.
	Logger *slog.Logger

	solicitations, advertisements, foreign, silenced, malformed, sendErrors atomic.Uint64
	quietUntil                                                              atomic.Int64 // unix nanoseconds
}

// DefaultSilenceAfterRouter is RouterAdvertiser.SilenceAfterRouter's zero
// value: a real router advertises at least every 30 minutes (RFC 4861's
// MaxRtrAdvInterval is at most 1800 s), so it is heard again before the
// silence ends.
const DefaultSilenceAfterRouter = 30 * time.Minute

// RAStats counts what a RouterAdvertiser did since it was made.
type RAStats struct {
	// Solicitations are router solicitations received.
	Solicitations uint64
	// Advertisements are router advertisements sent in answer.
	Advertisements uint64
	// ForeignRouters are advertisements heard from another router.
	ForeignRouters uint64
	// Silenced are solicitations left unanswered because another router
	// was heard within SilenceAfterRouter.
	Silenced uint64
	// Malformed are ICMPv6 messages dropped as not well-formed neighbour
	// discovery (too short, hop limit not 255).
	Malformed uint64
	// SendErrors are answers the socket would not send.
	SendErrors uint64
}

// Stats returns a snapshot of the counters.
func (a *RouterAdvertiser) Stats() RAStats {
	return RAStats{Solicitations: a.solicitations.Load(), Advertisements: a.advertisements.Load(),
		ForeignRouters: a.foreign.Load(), Silenced: a.silenced.Load(), Malformed: a.malformed.Load(), SendErrors: a.sendErrors.Load()}
}

// routerAdvertisement is the ICMPv6 message sent (type 134): everything
// zero but the type. The kernel fills in the checksum of raw ICMPv6
// sockets.
var routerAdvertisement = []byte{134, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

const (
	icmpRouterSolicitation  = 133
	icmpRouterAdvertisement = 134
)

// Validate reports every configuration mistake, wrapping ErrConfig.
func (a *RouterAdvertiser) Validate() error {
	var errs []error
	if a.Interface == "" {
		errs = append(errs, fmt.Errorf("%w: Interface: required (router advertisements go to one segment only)", ErrConfig))
	}
	if a.SilenceAfterRouter < 0 {
		errs = append(errs, fmt.Errorf("%w: SilenceAfterRouter: negative", ErrConfig))
	}
	return errors.Join(errs...)
}

func (a *RouterAdvertiser) log() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

// Listen opens a raw ICMPv6 socket bound to Interface that receives router
// solicitations (it joins ff02::2, all-routers) and advertisements, and
// returns it for Serve. Errors (no permission, no such interface, not
// Linux) come back here.
func (a *RouterAdvertiser) Listen(ctx context.Context) (net.PacketConn, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(a.Interface)
	if err != nil {
		return nil, fmt.Errorf("dhcpsrv: router advertisements: %w", err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = bindToDevice(int(fd), a.Interface) }); err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(ctx, "ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("dhcpsrv: router advertisements on %s: %w", a.Interface, err)
	}
	p := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPType(icmpRouterSolicitation))
	f.Accept(ipv6.ICMPType(icmpRouterAdvertisement))
	for _, step := range []error{
		p.SetICMPFilter(&f),
		p.SetMulticastInterface(ifi),
		p.SetMulticastHopLimit(255), // neighbour discovery: 255, or receivers drop it
		p.SetHopLimit(255),
		p.SetMulticastLoopback(false),
		p.JoinGroup(ifi, &net.IPAddr{IP: net.ParseIP("ff02::2")}),
	} {
		if step != nil {
			c.Close()
			return nil, fmt.Errorf("dhcpsrv: router advertisements on %s: %w", a.Interface, step)
		}
	}
	return c, nil
}

// ListenAndServe is Listen, then Serve, then closing the socket.
func (a *RouterAdvertiser) ListenAndServe(ctx context.Context) error {
	c, err := a.Listen(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return a.Serve(ctx, c)
}

// Serve answers router solicitations arriving on conn (from Listen) until
// ctx ends, then returns nil; it does not close conn.
func (a *RouterAdvertiser) Serve(ctx context.Context, conn net.PacketConn) error {
	if err := a.Validate(); err != nil {
		return err
	}
	silence := a.SilenceAfterRouter
	if silence == 0 {
		silence = DefaultSilenceAfterRouter
	}
	p := ipv6.NewPacketConn(conn)
	// The hop limit of what arrives: neighbour discovery from off-link
	// (not 255) is dropped. (Set on this wrapper: it sizes its buffers by
	// the flags it set.)
	if err := p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagSrc, true); err != nil {
		return fmt.Errorf("dhcpsrv: router advertisements: %w", err)
	}
	defer sockets.InterruptReads(ctx, conn.SetReadDeadline)()
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := p.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dhcpsrv: router advertisements: %w", err)
		}
		if n < 8 || cm == nil || cm.HopLimit != 255 {
			a.malformed.Add(1)
			continue
		}
		switch buf[0] {
		case icmpRouterAdvertisement:
			a.foreign.Add(1)
			if time.Now().UnixNano() > a.quietUntil.Load() {
				a.log().Warn("another IPv6 router advertises on the segment: not answering router solicitations", "interface", a.Interface, "router", src, "for", silence)
			}
			a.quietUntil.Store(time.Now().Add(silence).UnixNano())
		case icmpRouterSolicitation:
			a.solicitations.Add(1)
			if time.Now().UnixNano() < a.quietUntil.Load() {
				a.silenced.Add(1)
				continue
			}
			// RFC 4861 6.2.6: answer a solicitation from an unspecified
			// address to all-nodes; others may be answered unicast.
			dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: a.Interface}
			if ip, ok := src.(*net.IPAddr); ok && !ip.IP.IsUnspecified() {
				dst = &net.IPAddr{IP: ip.IP, Zone: a.Interface}
			}
			if _, err := p.WriteTo(routerAdvertisement, nil, dst); err != nil {
				a.sendErrors.Add(1)
				a.log().Debug("router advertisement not sent", "to", dst, "err", err)
				continue
			}
			a.advertisements.Add(1)
			a.log().Debug("router advertisement", "to", dst)
		}
	}
}
