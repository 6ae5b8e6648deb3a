package dhcpsrv_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// A lab server: one subnet, a reservation, the default GRUB boot files.
// Validate reports every configuration mistake before anything binds.
// Reply answers a request without a socket, exactly as Serve would; a real
// server, with Leases from OpenJournal, calls
//
//	conns, err := s.Listen(ctx) // binds port 67 on Interface: bind errors here
//	go s.Serve(ctx, conns...)   // or s.ListenAndServe(ctx)
func Example() {
	mp := hwaddr.MustParse("52:54:00:12:34:56")
	s := &dhcpsrv.Server{
		Interface: "br0",
		ServerIP:  netip.MustParseAddr("10.99.0.1"),
		Subnets: []dhcpsrv.Subnet{{
			Prefix:    netip.MustParsePrefix("10.99.0.0/24"),
			Ranges:    []dhcpsrv.Range{{From: netip.MustParseAddr("10.99.0.100"), To: netip.MustParseAddr("10.99.0.200")}},
			Router:    netip.MustParseAddr("10.99.0.1"),
			DNS:       []netip.Addr{netip.MustParseAddr("10.99.0.1")},
			Domain:    "lab",
			LeaseTime: time.Hour,
		}},
		Reservations: dhcpsrv.StaticReservations{mp: {IP: netip.MustParseAddr("10.99.0.10"), Hostname: "mp"}},
		Leases:       dhcpsrv.NewMemoryStore(), // dhcpsrv.OpenJournal(dir) in production
		OnLease: func(l dhcpsrv.Lease) {
			fmt.Printf("lease %s -> %s (%s, arch %s)\n", l.MAC, l.IP, l.Hostname, l.Arch)
		},
	}

	if err := s.Validate(); err != nil {
		fmt.Println(err)
		return
	}

	// A UEFI x64 machine network-boots.
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
	}
	discover, _ := dhcpv4.NewDiscovery(mp.HardwareAddr(), pxe...)
	offer := s.Reply(context.Background(), discover)
	request, _ := dhcpv4.NewRequestFromOffer(offer, pxe...)
	ack := s.Reply(context.Background(), request)
	fmt.Println(ack.MessageType(), ack.YourIPAddr, "next-server", ack.ServerIPAddr, "file", ack.BootFileName)

	l, _, _ := s.Lease(context.Background(), mp) // an error only from a failing LeaseStore
	fmt.Println("known:", l.IP, l.Hostname, net.IP(l.IP.AsSlice()).IsPrivate())
	// Output:
	// lease 52:54:00:12:34:56 -> 10.99.0.10 (mp, arch efi-x64)
	// ACK 10.99.0.10 next-server 10.99.0.1 file grub/x86_64-efi/core.efi
	// known: 10.99.0.10 mp true
}
