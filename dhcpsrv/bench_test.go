package dhcpsrv_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/metalboot/metalboot/dhcpsrv"
)

// BenchmarkDORA measures one DISCOVER/OFFER/REQUEST/ACK through Reply (no
// sockets) with an in-memory store; each iteration is a new client.
func BenchmarkDORA(b *testing.B) {
	s := &dhcpsrv.Server{
		ServerIP: serverIP,
		Subnets: []dhcpsrv.Subnet{{
			Prefix: netip.MustParsePrefix("10.0.0.0/8"),
			Ranges: []dhcpsrv.Range{{From: netip.MustParseAddr("10.1.0.0"), To: netip.MustParseAddr("10.254.255.255")}},
			Router: serverIP, DNS: []netip.Addr{serverIP}, Domain: "lab", LeaseTime: time.Hour,
		}},
		Leases: dhcpsrv.NewMemoryStore(),
	}
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		hw := net.HardwareAddr{2, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		d, _ := dhcpv4.NewDiscovery(hw, pxe...)
		o := s.Reply(ctx, d)
		r, _ := dhcpv4.NewRequestFromOffer(o, pxe...)
		if a := s.Reply(ctx, r); a == nil || a.MessageType() != dhcpv4.MessageTypeAck {
			b.Fatal("no ACK")
		}
	}
}
