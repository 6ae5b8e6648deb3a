package dhcpsrv

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzHandlePacket feeds arbitrary datagrams to the packet path of a normal
// server and of a proxyDHCP server on ports 67 and 4011: nothing may panic,
// and every reply must decode again.
func FuzzHandlePacket(f *testing.F) {
	hw := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	d, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")))
	f.Add(d.ToBytes())
	r, _ := dhcpv4.NewRequestFromOffer(d, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 99, 0, 100))))
	r.MessageType()
	r.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
	f.Add(r.ToBytes())
	rel, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithHwAddr(hw), dhcpv4.WithClientIP(net.IPv4(10, 99, 0, 100)))
	f.Add(rel.ToBytes())
	g, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithRelay(net.IPv4(10, 98, 0, 1)), dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2})))
	f.Add(g.ToBytes())
	f.Add([]byte{})
	f.Add([]byte{1, 1, 6, 0})

	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	mk := func(proxy bool) *Server {
		return &Server{
			ServerIP: netip.MustParseAddr("10.99.0.1"),
			Subnets: []Subnet{{Prefix: netip.MustParsePrefix("10.99.0.0/24"),
				Ranges: []Range{{netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("10.99.0.103")}}},
				{Prefix: netip.MustParsePrefix("10.98.0.0/24"),
					Ranges: []Range{{netip.MustParseAddr("10.98.0.100"), netip.MustParseAddr("10.98.0.103")}}}},
			ProxyDHCP: proxy,
			Boot:      BootPolicy{HTTPBase: "http://10.99.0.1:8080"},
			Clock:     func() time.Time { return now },
		}
	}
	servers := []*Server{mk(false), mk(true)}
	peer := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 50), Port: 68}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range servers {
			if err := s.prepare(); err != nil {
				t.Fatal(err)
			}
			for _, port := range []int{ServerPort, PXEPort} {
				out, dst := s.handlePacket(context.Background(), b, port, peer)
				if out == nil {
					continue
				}
				if dst == nil {
					t.Fatal("reply without destination")
				}
				if _, err := dhcpv4.FromBytes(out); err != nil {
					t.Fatalf("reply does not decode: %v", err)
				}
			}
		}
	})
}

func TestMalformedPacketsAreCountedAndDropped(t *testing.T) {
	s := &Server{ServerIP: netip.MustParseAddr("10.99.0.1"),
		Subnets: []Subnet{{Prefix: netip.MustParsePrefix("10.99.0.0/24")}}}
	if err := s.prepare(); err != nil {
		t.Fatal(err)
	}
	d, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1})
	reply := d.ToBytes()
	reply[0] = 2 // BOOTREPLY
	short := []byte{1, 1, 6, 0, 1, 2}
	ib, _ := dhcpv4.NewDiscovery(net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8}) // not Ethernet
	for _, b := range [][]byte{nil, short, reply, ib.ToBytes()} {
		if out, _ := s.handlePacket(context.Background(), b, ServerPort, nil); out != nil {
			t.Fatalf("answered a malformed packet %x", b)
		}
	}
	if got := s.Stats().Malformed; got != 4 {
		t.Fatalf("Malformed = %d, want 4", got)
	}
}

func TestExpiredOffersAreForgotten(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := &Server{ServerIP: netip.MustParseAddr("10.99.0.1"), Clock: func() time.Time { return now },
		Subnets: []Subnet{{Prefix: netip.MustParsePrefix("10.0.0.0/8"),
			Ranges: []Range{{netip.MustParseAddr("10.1.0.0"), netip.MustParseAddr("10.2.0.0")}}}}}
	const n = 5000
	for i := range n {
		d, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)})
		if s.Reply(context.Background(), d) == nil {
			t.Fatal("no offer")
		}
		if i == 1500 {
			now = now.Add(time.Minute) // the first 1500 offers expire
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.offers) > n-1500 || len(s.offerByMAC) != len(s.offers) {
		t.Fatalf("offers not swept: %d offers, %d by MAC", len(s.offers), len(s.offerByMAC))
	}
}
