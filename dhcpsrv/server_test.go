package dhcpsrv_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

var (
	serverIP = netip.MustParseAddr("10.99.0.1")
	ctx      = context.Background()
)

// fakeClock is a settable clock for expiry tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newServer(t *testing.T, mod func(*dhcpsrv.Server)) (*dhcpsrv.Server, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	s := &dhcpsrv.Server{
		ServerIP: serverIP,
		Subnets: []dhcpsrv.Subnet{{
			Prefix:    netip.MustParsePrefix("10.99.0.0/24"),
			Ranges:    []dhcpsrv.Range{{From: netip.MustParseAddr("10.99.0.100"), To: netip.MustParseAddr("10.99.0.109")}},
			Router:    serverIP,
			DNS:       []netip.Addr{serverIP},
			Domain:    "lab",
			LeaseTime: time.Hour,
		}, {
			Prefix: netip.MustParsePrefix("10.98.0.0/24"),
			Ranges: []dhcpsrv.Range{{From: netip.MustParseAddr("10.98.0.50"), To: netip.MustParseAddr("10.98.0.60")}},
			Router: netip.MustParseAddr("10.98.0.1"),
		}},
		Clock: clk.Now,
	}
	if mod != nil {
		mod(s)
	}
	return s, clk
}

func mac(i int) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0, 0, 0, byte(i)} }

func discover(t *testing.T, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(hw, mods...)
	require.NoError(t, err)
	return d
}

func requestFor(t *testing.T, offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	r, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	require.NoError(t, err)
	return r
}

// dora runs DISCOVER/OFFER/REQUEST/ACK and returns the ACK.
func dora(t *testing.T, s *dhcpsrv.Server, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	offer := s.Reply(ctx, discover(t, hw, mods...))
	require.NotNil(t, offer, "no OFFER")
	require.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
	ack := s.Reply(ctx, requestFor(t, offer, mods...))
	require.NotNil(t, ack, "no ACK")
	require.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType(), ack.Summary())
	return ack
}

func TestDORANetworkOptions(t *testing.T) {
	s, _ := newServer(t, nil)
	ack := dora(t, s, mac(1))
	assert.Equal(t, "10.99.0.100", ack.YourIPAddr.String())
	assert.Equal(t, "10.99.0.1", ack.ServerIdentifier().String())
	assert.Equal(t, "ffffff00", ack.SubnetMask().String())
	assert.Equal(t, "10.99.0.1", ack.Router()[0].String())
	assert.Equal(t, "10.99.0.1", ack.DNS()[0].String())
	assert.Equal(t, "lab", ack.DomainName())
	assert.Equal(t, time.Hour, ack.IPAddressLeaseTime(0))
	assert.Equal(t, 30*time.Minute, ack.IPAddressRenewalTime(0))
	// a plain (non network-boot) client gets no boot file
	assert.Empty(t, ack.BootFileName)
	assert.False(t, ack.Options.Has(dhcpv4.OptionBootfileName))
	assert.False(t, ack.Options.Has(dhcpv4.OptionVendorSpecificInformation))
	assert.False(t, ack.Options.Has(dhcpv4.OptionClassIdentifier))

	l, ok, _ := s.Lease(context.Background(), hwaddr.MAC(mac(1)))
	require.True(t, ok)
	assert.Equal(t, "10.99.0.100", l.IP.String())
	// same client again: same address
	ack2 := dora(t, s, mac(1))
	assert.Equal(t, "10.99.0.100", ack2.YourIPAddr.String())
	// another client: another address
	ack3 := dora(t, s, mac(2))
	assert.Equal(t, "10.99.0.101", ack3.YourIPAddr.String())
	st := s.Stats()
	assert.EqualValues(t, 3, st.Acks)
	assert.EqualValues(t, 3, st.Offers)
}

func TestBootOptionsByArch(t *testing.T) {
	s, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Boot.HTTPBase = "http://10.99.0.1:8080"
		s.NextServer = netip.MustParseAddr("10.99.0.2")
	})
	cases := []struct {
		arch   iana.Arch
		vendor string
		file   string
		class  string
	}{
		{iana.INTEL_X86PC, "PXEClient:Arch:00000:UNDI:002001", "grub/i386-pc/core.0", "PXEClient"},
		{iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003016", "grub/x86_64-efi/core.efi", "PXEClient"},
		{iana.EFI_BC, "PXEClient:Arch:00009:UNDI:003016", "grub/x86_64-efi/core.efi", "PXEClient"},
		{iana.EFI_ARM64, "PXEClient:Arch:00011:UNDI:003016", "grub/arm64-efi/core.efi", "PXEClient"},
		{iana.EFI_X86_64_HTTP, "HTTPClient:Arch:00016:UNDI:003001", "http://10.99.0.1:8080/grub/x86_64-efi/core-http.efi", "HTTPClient"},
		{iana.EFI_ARM64_HTTP, "HTTPClient:Arch:00019:UNDI:003001", "http://10.99.0.1:8080/grub/arm64-efi/core-http.efi", "HTTPClient"},
	}
	uuid := append([]byte{0}, []byte("0123456789abcdef")...)
	for i, c := range cases {
		t.Run(c.vendor, func(t *testing.T) {
			ack := dora(t, s, mac(10+i),
				dhcpv4.WithOption(dhcpv4.OptClientArch(c.arch)),
				dhcpv4.WithOption(dhcpv4.OptClassIdentifier(c.vendor)),
				dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid)))
			assert.Equal(t, c.file, ack.BootFileName, "file field")
			assert.Equal(t, c.file, ack.BootFileNameOption(), "option 67")
			assert.Equal(t, c.class, ack.ClassIdentifier(), "option 60")
			assert.Equal(t, uuid, ack.GetOneOption(dhcpv4.OptionClientMachineIdentifier), "option 97 echoed")
			if c.class == "PXEClient" {
				assert.Equal(t, "10.99.0.2", ack.ServerIPAddr.String(), "siaddr")
				assert.Equal(t, "10.99.0.2", ack.TFTPServerName(), "option 66")
				// EDK2 needs option 43 (discovery control 8) or it asks port 4011
				assert.Equal(t, []byte{6, 1, 8, 255}, ack.GetOneOption(dhcpv4.OptionVendorSpecificInformation), "option 43")
			} else {
				assert.False(t, ack.Options.Has(dhcpv4.OptionVendorSpecificInformation), "no option 43 for HTTP boot")
			}
			l, ok, _ := s.Lease(context.Background(), hwaddr.MAC(mac(10+i)))
			require.True(t, ok)
			assert.Equal(t, dhcpsrv.Arch(c.arch), l.Arch)
			assert.Equal(t, "33323130-3534-3736-3839-616263646566", l.UUID, "SMBIOS byte order")
		})
	}
}

func TestBootArchFromVendorClassOnly(t *testing.T) {
	s, _ := newServer(t, nil)
	ack := dora(t, s, mac(1), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")))
	assert.Equal(t, "grub/x86_64-efi/core.efi", ack.BootFileName)
	assert.Equal(t, "10.99.0.1", ack.ServerIPAddr.String(), "NextServer defaults to ServerIP")
}

func TestBootPolicyCustomAndHTTPWithoutBase(t *testing.T) {
	p := dhcpsrv.BootPolicy{Files: map[dhcpsrv.Arch]string{dhcpsrv.ArchBIOS: "undionly.kpxe", dhcpsrv.ArchEFIx64HTTP: "/x.efi"}}
	f, isHTTP, ok := p.BootFile(dhcpsrv.ArchBIOS)
	assert.True(t, ok)
	assert.False(t, isHTTP)
	assert.Equal(t, "undionly.kpxe", f)
	_, _, ok = p.BootFile(dhcpsrv.ArchEFIx64)
	assert.False(t, ok, "not in the caller's map")
	_, isHTTP, ok = p.BootFile(dhcpsrv.ArchEFIx64HTTP)
	assert.True(t, isHTTP)
	assert.False(t, ok, "HTTP boot needs HTTPBase")
	p.Disabled = true
	_, _, ok = p.BootFile(dhcpsrv.ArchBIOS)
	assert.False(t, ok)
}

func TestIPXEGetsNoPXEDHCP(t *testing.T) {
	s, _ := newServer(t, nil)
	ack := dora(t, s, mac(1), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)), dhcpv4.WithUserClass("iPXE", false))
	assert.Equal(t, []byte{176, 1, 1}, ack.GetOneOption(dhcpv4.GenericOptionCode(175)))
}

func TestReservation(t *testing.T) {
	m := hwaddr.MAC(mac(7))
	s, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Reservations = dhcpsrv.StaticReservations{m: {IP: netip.MustParseAddr("10.99.0.20"), Hostname: "node7"}}
	})
	ack := dora(t, s, mac(7))
	assert.Equal(t, "10.99.0.20", ack.YourIPAddr.String())
	assert.Equal(t, "node7", ack.HostName())
	// requesting another address is refused
	req, err := dhcpv4.NewRequestFromOffer(ack)
	require.NoError(t, err)
	req.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 99, 0, 105)))
	nak := s.Reply(ctx, req)
	require.NotNil(t, nak)
	assert.Equal(t, dhcpv4.MessageTypeNak, nak.MessageType())
	// another MAC asking for the reserved address (in INIT-REBOOT) gets a NAK
	// because it is not in the pool
	other := discover(t, mac(8))
	other.MessageType()
	r2, err := dhcpv4.NewRequestFromOffer(ack)
	require.NoError(t, err)
	r2.ClientHWAddr = mac(8)
	assert.Equal(t, dhcpv4.MessageTypeNak, s.Reply(ctx, r2).MessageType())
}

func TestReservedIPInsidePoolNotGivenToOthers(t *testing.T) {
	m := hwaddr.MAC(mac(99))
	s, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Reservations = dhcpsrv.StaticReservations{m: {IP: netip.MustParseAddr("10.99.0.100")}}
	})
	ack := dora(t, s, mac(1))
	assert.Equal(t, "10.99.0.101", ack.YourIPAddr.String())
}

func TestPoolExhaustionAndRecovery(t *testing.T) {
	s, clk := newServer(t, nil) // 10 addresses, 1 h leases
	for i := range 10 {
		dora(t, s, mac(i))
	}
	// the eleventh client gets no offer
	assert.Nil(t, s.Reply(ctx, discover(t, mac(50))))
	assert.EqualValues(t, 1, s.Stats().PoolExhausted)
	// and asking directly for a taken address gets a NAK
	req, err := dhcpv4.NewRequestFromOffer(dora(t, s, mac(0)))
	require.NoError(t, err)
	req.ClientHWAddr = mac(50)
	assert.Equal(t, dhcpv4.MessageTypeNak, s.Reply(ctx, req).MessageType())
	// after the leases expired, the new client is served
	clk.Add(61 * time.Minute)
	ack := dora(t, s, mac(50))
	assert.True(t, netip.MustParsePrefix("10.99.0.0/24").Contains(netip.MustParseAddr(ack.YourIPAddr.String())))
	// an old client coming back gets an address too (someone's expired one)
	dora(t, s, mac(3))
}

func TestOfferHeldForClient(t *testing.T) {
	s, _ := newServer(t, nil)
	o1 := s.Reply(ctx, discover(t, mac(1)))
	o2 := s.Reply(ctx, discover(t, mac(2)))
	require.NotEqual(t, o1.YourIPAddr.String(), o2.YourIPAddr.String())
	// a retransmitted DISCOVER gets the same address
	o1b := s.Reply(ctx, discover(t, mac(1)))
	assert.Equal(t, o1.YourIPAddr.String(), o1b.YourIPAddr.String())
	// client 2 cannot take client 1's offered address
	r := requestFor(t, o1)
	r.ClientHWAddr = mac(2)
	assert.Equal(t, dhcpv4.MessageTypeNak, s.Reply(ctx, r).MessageType())
}

func TestRenewReleaseDecline(t *testing.T) {
	s, clk := newServer(t, nil)
	var released []dhcpsrv.Lease
	s.OnRelease = func(l dhcpsrv.Lease) { released = append(released, l) }
	ack := dora(t, s, mac(1))
	ip := ack.YourIPAddr

	// RENEWING: ciaddr set, no option 50, unicast
	clk.Add(40 * time.Minute)
	renew, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(mac(1)), dhcpv4.WithClientIP(ip))
	require.NoError(t, err)
	rack := s.Reply(ctx, renew)
	require.Equal(t, dhcpv4.MessageTypeAck, rack.MessageType())
	l, ok, _ := s.Lease(context.Background(), hwaddr.MAC(mac(1)))
	require.True(t, ok)
	assert.True(t, clk.Now().Add(time.Hour).Equal(l.Expires), "renewal extends from now: %v", l.Expires)

	// RELEASE frees it (but it stays remembered for the same client)
	rel, err := dhcpv4.NewReleaseFromACK(ack)
	require.NoError(t, err)
	assert.Nil(t, s.Reply(ctx, rel))
	_, ok, _ = s.Lease(context.Background(), hwaddr.MAC(mac(1)))
	assert.False(t, ok)
	require.Len(t, released, 1)
	assert.Equal(t, ip.String(), released[0].IP.String())
	assert.Equal(t, ip.String(), dora(t, s, mac(1)).YourIPAddr.String(), "same address again")

	// DECLINE quarantines the address: the next client gets another one
	dec, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline), dhcpv4.WithHwAddr(mac(1)),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)))
	require.NoError(t, err)
	assert.Nil(t, s.Reply(ctx, dec))
	assert.NotEqual(t, ip.String(), dora(t, s, mac(1)).YourIPAddr.String())
	assert.NotEqual(t, ip.String(), dora(t, s, mac(2)).YourIPAddr.String())
	assert.EqualValues(t, 1, s.Stats().Declines)
}

func TestRequestForOtherServerIsIgnored(t *testing.T) {
	s, _ := newServer(t, nil)
	offer := s.Reply(ctx, discover(t, mac(1)))
	r := requestFor(t, offer)
	r.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 254)))
	assert.Nil(t, s.Reply(ctx, r))
}

func TestWrongNetworkNAK(t *testing.T) {
	s, _ := newServer(t, nil)
	r, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(mac(1)),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 5))))
	require.NoError(t, err)
	nak := s.Reply(ctx, r)
	require.NotNil(t, nak)
	assert.Equal(t, dhcpv4.MessageTypeNak, nak.MessageType())
	assert.EqualValues(t, 1, s.Stats().Naks)
}

func TestRelayPicksRelaySubnet(t *testing.T) {
	s, _ := newServer(t, nil)
	gi := dhcpv4.WithRelay(net.IPv4(10, 98, 0, 1))
	ack := dora(t, s, mac(1), gi)
	assert.Equal(t, "10.98.0.50", ack.YourIPAddr.String())
	assert.Equal(t, "10.98.0.1", ack.Router()[0].String())
	assert.Equal(t, "10.98.0.1", ack.GatewayIPAddr.String(), "giaddr kept in the reply")
	// a relay on an unknown subnet is ignored
	assert.Nil(t, s.Reply(ctx, discover(t, mac(2), dhcpv4.WithRelay(net.IPv4(172, 16, 0, 1)))))
}

func TestInform(t *testing.T) {
	s, _ := newServer(t, nil)
	inf, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithHwAddr(mac(1)),
		dhcpv4.WithClientIP(net.IPv4(10, 99, 0, 5)))
	require.NoError(t, err)
	ack := s.Reply(ctx, inf)
	require.NotNil(t, ack)
	assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	assert.True(t, ack.YourIPAddr.IsUnspecified())
	assert.False(t, ack.Options.Has(dhcpv4.OptionIPAddressLeaseTime))
	assert.Equal(t, "lab", ack.DomainName())
}

func TestProxyDHCPAnswersOnlyPXE(t *testing.T) {
	s, _ := newServer(t, func(s *dhcpsrv.Server) { s.ProxyDHCP = true })
	// plain client: ignored
	assert.Nil(t, s.Reply(ctx, discover(t, mac(1))))
	// PXE client: OFFER without address, with boot options
	o := s.Reply(ctx, discover(t, mac(2), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))))
	require.NotNil(t, o)
	assert.Equal(t, dhcpv4.MessageTypeOffer, o.MessageType())
	assert.True(t, o.YourIPAddr.IsUnspecified(), "proxyDHCP gives no address")
	assert.Equal(t, "grub/x86_64-efi/core.efi", o.BootFileName)
	assert.Equal(t, "PXEClient", o.ClassIdentifier())
	assert.Equal(t, []byte{6, 1, 8, 255}, o.GetOneOption(dhcpv4.OptionVendorSpecificInformation))
	assert.False(t, o.Options.Has(dhcpv4.OptionIPAddressLeaseTime))
	// no lease was stored
	_, ok, _ := s.Lease(context.Background(), hwaddr.MAC(mac(2)))
	assert.False(t, ok)
}

func TestHandlerAndHooks(t *testing.T) {
	var events []dhcpsrv.Event
	var leases []dhcpsrv.Lease
	s, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Handler = dhcpsrv.HandlerFunc(func(_ context.Context, req, resp *dhcpv4.DHCPv4) {
			resp.UpdateOption(dhcpv4.OptRootPath("/srv/root"))
		})
		s.OnDiscover = func(e dhcpsrv.Event) { events = append(events, e) }
		s.OnLease = func(l dhcpsrv.Lease) { leases = append(leases, l) }
	})
	ack := dora(t, s, mac(1), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	assert.Equal(t, "/srv/root", ack.RootPath())
	require.Len(t, events, 1)
	assert.Equal(t, "10.99.0.100", events[0].Offered.String())
	assert.Equal(t, "grub/i386-pc/core.0", events[0].BootFile)
	assert.Equal(t, dhcpsrv.ArchBIOS, events[0].Arch)
	require.Len(t, leases, 1)
	assert.Equal(t, "52:54:00:00:00:01", leases[0].MAC.String())
}

func TestRequestWithoutArchUsesDiscoverInfo(t *testing.T) {
	s, _ := newServer(t, nil)
	offer := s.Reply(ctx, discover(t, mac(1), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))))
	require.NotNil(t, offer)
	ack := s.Reply(ctx, requestFor(t, offer))
	require.NotNil(t, ack)
	assert.Equal(t, "grub/arm64-efi/core.efi", ack.BootFileName)
	l, ok, _ := s.Lease(context.Background(), hwaddr.MAC(mac(1)))
	require.True(t, ok)
	assert.Equal(t, dhcpsrv.ArchEFIARM64, l.Arch)

	// The booted system's DHCP client names no architecture: the lease
	// keeps the firmware's (labserver matches groups on it).
	ack = dora(t, s, mac(1))
	require.NotNil(t, ack)
	l, ok, _ = s.Lease(context.Background(), hwaddr.MAC(mac(1)))
	require.True(t, ok)
	assert.Equal(t, dhcpsrv.ArchEFIARM64, l.Arch)
	// A new architecture replaces it.
	dora(t, s, mac(1), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
	l, _, _ = s.Lease(context.Background(), hwaddr.MAC(mac(1)))
	assert.Equal(t, dhcpsrv.ArchEFIx64, l.Arch)
	// Another MAC without one has none.
	dora(t, s, mac(2))
	l, _, _ = s.Lease(context.Background(), hwaddr.MAC(mac(2)))
	assert.Equal(t, dhcpsrv.ArchUnknown, l.Arch)
}
