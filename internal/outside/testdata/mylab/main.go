// Command mylab is what a user of the metalboot library writes in a module
// of their own: every seam implemented with the user's own types (a lease
// store, reservations, facts, an Ignition guard, an inventory store, DNS
// records) and served through metalboot's real servers. internal/outside's
// test builds and runs it from a temporary module outside the repository,
// so anything that only code inside the module could write (an internal
// type in an exported signature) fails the build.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/ignition"
	"github.com/metalboot/metalboot/profile"
)

// leases is a lease store of the user's own: a map with per-address
// revisions (what an etcd or SQL backend would do with its own revisions).
type leases struct {
	mu  sync.Mutex
	rev uint64
	m   map[netip.Addr]dhcpsrv.Lease
}

func (s *leases) Get(_ context.Context, ip netip.Addr) (dhcpsrv.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.m[ip]; ok {
		return l, nil
	}
	return dhcpsrv.Lease{}, dhcpsrv.ErrNotFound
}

func (s *leases) ByMAC(_ context.Context, mac hwaddr.MAC) (dhcpsrv.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best dhcpsrv.Lease
	for _, l := range s.m {
		if l.MAC == mac && l.Rev > best.Rev {
			best = l
		}
	}
	if best.Rev == 0 {
		return dhcpsrv.Lease{}, dhcpsrv.ErrNotFound
	}
	return best, nil
}

func (s *leases) CompareAndSwap(_ context.Context, prev uint64, l dhcpsrv.Lease) (dhcpsrv.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[l.IP].Rev != prev {
		return dhcpsrv.Lease{}, dhcpsrv.ErrConflict
	}
	s.rev++
	l.Rev = s.rev
	s.m[l.IP] = l
	return l, nil
}

func (s *leases) CompareAndDelete(_ context.Context, ip netip.Addr, rev uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[ip].Rev != rev {
		return dhcpsrv.ErrConflict
	}
	delete(s.m, ip)
	return nil
}

// reservations answers from the user's own table.
type reservations map[hwaddr.MAC]netip.Addr

func (r reservations) Reservation(_ context.Context, mac hwaddr.MAC) (dhcpsrv.Reservation, bool, error) {
	ip, ok := r[mac]
	return dhcpsrv.Reservation{IP: ip, Hostname: "node1"}, ok, nil
}

func (r reservations) ReservedFor(_ context.Context, ip netip.Addr) (hwaddr.MAC, bool, error) {
	for m, a := range r {
		if a == ip {
			return m, true, nil
		}
	}
	return hwaddr.MAC{}, false, nil
}

// facts tells the resolver what the user's CMDB knows.
type facts struct{}

func (facts) Facts(_ context.Context, mac hwaddr.MAC) (profile.Facts, bool) {
	return profile.Facts{Hostname: "node1.lab", IP: netip.MustParseAddr("10.0.0.10")}, true
}

// guard allows loopback only.
type guard struct{}

func (guard) Allowed(_ context.Context, _ hwaddr.MAC, remote netip.Addr) bool {
	return remote.IsLoopback()
}

// store is an inventory store of the user's own (built in Go, not read
// from a data directory).
type store struct{ inv *profile.Inventory }

func (s store) Inventory() *profile.Inventory { return s.inv }

func check(what string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", what, err)
		os.Exit(1)
	}
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mac := hwaddr.MustParse("52:54:00:12:34:56")

	// DHCP through the real server's Reply (no socket: this runs anywhere).
	ls := &leases{m: map[netip.Addr]dhcpsrv.Lease{}}
	d := &dhcpsrv.Server{
		ServerIP: netip.MustParseAddr("10.0.0.1"),
		Subnets: []dhcpsrv.Subnet{{Prefix: netip.MustParsePrefix("10.0.0.0/24"),
			Ranges: []dhcpsrv.Range{{From: netip.MustParseAddr("10.0.0.100"), To: netip.MustParseAddr("10.0.0.200")}}}},
		Reservations: reservations{mac: netip.MustParseAddr("10.0.0.10")},
		Leases:       ls,
	}
	check("dhcp validate", d.Validate())
	disc, err := dhcpv4.NewDiscovery(net.HardwareAddr(mac[:]))
	check("discover", err)
	offer := d.Reply(ctx, disc)
	if offer == nil || offer.YourIPAddr.String() != "10.0.0.10" {
		check("offer", fmt.Errorf("want the reserved 10.0.0.10, got %v", offer))
	}
	req, err := dhcpv4.NewRequestFromOffer(offer)
	check("request", err)
	ack := d.Reply(ctx, req)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		check("ack", fmt.Errorf("got %v", ack))
	}
	if l, err := ls.ByMAC(ctx, mac); err != nil || l.IP.String() != "10.0.0.10" {
		check("lease in the user's store", fmt.Errorf("%v %v", l, err))
	}
	if l, ok, err := d.Lease(ctx, mac); err != nil || !ok || l.IP.String() != "10.0.0.10" {
		check("Server.Lease", fmt.Errorf("%v %v %v", l, ok, err))
	}
	fmt.Println("ok dhcp: reserved address leased into the user's store")

	// /grub and /ignition from an inventory built in Go, with the user's
	// facts and guard.
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/assets/vmlinuz",
			Args: []string{"ignition.config.url={{.BaseURL}}/ignition?mac={{.MAC}}"}}, IgnitionID: "i.ign"}},
		Groups:    []profile.Group{{ID: "g", Profile: "p"}},
		Templates: map[string][]byte{"i.ign": []byte(`{"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "/etc/hostname", "contents": {"source": "data:,{{.Hostname}}"}}]}}`)},
	})
	check("inventory", err)
	res := &profile.Resolver{Store: store{inv}, BaseURL: "http://10.0.0.1:8080", Facts: facts{}}
	mux := http.NewServeMux()
	mux.Handle("/grub", &grubcfg.Handler{Resolver: res})
	mux.Handle("/ignition", &ignition.Handler{Resolver: res, Guard: guard{}})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, c := range []struct{ path, want string }{
		{"/grub?mac=" + mac.String(), "ignition.config.url=http://10.0.0.1:8080/ignition?mac=52:54:00:12:34:56"},
		{"/ignition?mac=" + mac.String(), "node1.lab"},
	} {
		resp, err := http.Get(srv.URL + c.path)
		check(c.path, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), c.want) {
			check(c.path, fmt.Errorf("%s: %s", resp.Status, b))
		}
		fmt.Println("ok", c.path)
	}

	serveTFTPAndDNS(ctx)
	fmt.Println("ok all")
}
