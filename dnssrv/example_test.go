package dnssrv_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/metalboot/metalboot/dnssrv"
)

// The demo lab: configured names (swapped whole on a reload) first, then
// the names DHCP clients hold while their leases last. Listen binds (a
// bind error shows here, before anything runs); Serve serves until the
// context ends and leaves closing the sockets to its caller.
func Example() {
	static := new(dnssrv.Table)
	static.Set("deploy.lab", netip.MustParseAddr("172.22.10.2"))
	static.Set("mp.lab", netip.MustParseAddr("172.22.10.50"))
	var inventory dnssrv.Swap // replaced whole when the inventory is reloaded
	inventory.Store(static)
	leases := &dnssrv.LeaseNames{Zone: "lab."} // fed by the DHCP server's OnLease/OnRelease

	srv := &dnssrv.Server{
		Addr:       "127.0.0.1:0", // "" is dnssrv.DefaultAddr, ":53"
		Zones:      []string{"lab."},
		ReverseFor: []netip.Prefix{netip.MustParsePrefix("172.22.10.0/24")},
		// Configured names win: a DHCP client calling itself "deploy"
		// cannot take over deploy.lab.
		Records: dnssrv.First(&inventory, leases),
	}
	ctx, cancel := context.WithCancel(context.Background())
	pc, l, err := srv.Listen(ctx) // validates the configuration, then binds
	if err != nil {
		fmt.Println(err)
		cancel()
		return
	}
	defer pc.Close()
	defer l.Close()
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, pc, l) }()

	ask := func(name string, qtype uint16) {
		m := new(dns.Msg).SetQuestion(name, qtype)
		r, _, err := new(dns.Client).Exchange(m, pc.LocalAddr().String())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %s: %s", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				fmt.Print(" ", rr.A)
			case *dns.PTR:
				fmt.Print(" ", rr.Ptr)
			}
		}
		fmt.Println()
	}
	ask("mp.lab.", dns.TypeA)
	ask("50.10.22.172.in-addr.arpa.", dns.TypePTR)
	ask("mp.lab.", dns.TypeAAAA)
	ask("smpc.lab.", dns.TypeA)
	// DHCP leases smpc its address (dhcpsrv's OnLease calls this).
	leases.Bind("SMPC", netip.MustParseAddr("172.22.10.54"), time.Now().Add(time.Hour))
	ask("smpc.lab.", dns.TypeA)
	leases.Bind("deploy", netip.MustParseAddr("172.22.10.66"), time.Now().Add(time.Hour))
	ask("deploy.lab.", dns.TypeA)
	ask("example.com.", dns.TypeA)

	cancel()
	fmt.Println("serve:", <-done)
	// Output:
	// mp.lab. A: NOERROR 172.22.10.50
	// 50.10.22.172.in-addr.arpa. PTR: NOERROR mp.lab.
	// mp.lab. AAAA: NOERROR
	// smpc.lab. A: NXDOMAIN
	// smpc.lab. A: NOERROR 172.22.10.54
	// deploy.lab. A: NOERROR 172.22.10.2
	// example.com. A: REFUSED
	// serve: <nil>
}
