package dnssrv_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/metalboot/metalboot/dnssrv"
	"github.com/miekg/dns"
)

// The demo lab: static names plus a DHCP client that appears with its lease.
func Example() {
	static := new(dnssrv.Table)
	static.Set("deploy.lab", netip.MustParseAddr("172.22.10.2"))
	static.Set("mp.lab", netip.MustParseAddr("172.22.10.50"))
	leases := new(dnssrv.Table)

	srv := &dnssrv.Server{
		Zones:      []string{"lab."},
		ReverseFor: []netip.Prefix{netip.MustParsePrefix("172.22.10.0/24")},
		Records:    dnssrv.Multi(static, leases),
	}
	ctx, cancel := context.WithCancel(context.Background())
	pc, l, err := dnssrv.ListenUDPTCP(ctx, "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
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
	leases.SetExpiring("smpc.lab", netip.MustParseAddr("172.22.10.54"), time.Now().Add(time.Hour))
	ask("smpc.lab.", dns.TypeA)
	ask("example.com.", dns.TypeA)

	cancel()
	fmt.Println("serve:", <-done)
	// Output:
	// mp.lab. A: NOERROR 172.22.10.50
	// 50.10.22.172.in-addr.arpa. PTR: NOERROR mp.lab.
	// mp.lab. AAAA: NOERROR
	// smpc.lab. A: NXDOMAIN
	// smpc.lab. A: NOERROR 172.22.10.54
	// example.com. A: REFUSED
	// serve: <nil>
}
