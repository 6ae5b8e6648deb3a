package dnssrv

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzHandlePacket feeds arbitrary datagrams through the packet path the UDP
// and TCP loops use. It must never panic; anything it answers must parse,
// carry the query's ID with QR set, and fit the UDP size limit.
func FuzzHandlePacket(f *testing.F) {
	for _, m := range []*dns.Msg{
		query("mp.lab.", dns.TypeA),
		query("MP.LAB.", dns.TypeAAAA),
		query("lab.", dns.TypeANY),
		query("lab.", dns.TypeNS),
		query("50.10.22.172.in-addr.arpa.", dns.TypePTR),
		query("10.22.172.in-addr.arpa.", dns.TypeSOA),
		query("0.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", dns.TypePTR),
		query("example.com.", dns.TypeA),
		query("big.lab.", dns.TypeA),
		new(dns.Msg).SetQuestion("mp.lab.", dns.TypeA).SetEdns0(4096, true),
		new(dns.Msg).SetQuestion("lab.", dns.TypeAXFR),
	} {
		f.Add(wire(f, m), true)
	}
	opt := new(dns.Msg).SetQuestion("mp.lab.", dns.TypeA).SetEdns0(1232, false)
	opt.IsEdns0().SetVersion(3)
	f.Add(wire(f, opt), false)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, true) // compression loop
	f.Add([]byte{}, true)

	tab := demoLab()
	var many []netip.Addr
	for i := range 60 {
		many = append(many, netip.AddrFrom4([4]byte{172, 22, 10, byte(100 + i)}))
	}
	tab.Set("big.lab", many...)
	tab.Set("v6.lab", netip.MustParseAddr("2001:db8::50"))
	s := demoServer(tab)
	s.ReverseFor = append(s.ReverseFor, netip.MustParsePrefix("2001:db8::/32"))
	s.RateLimit = -1
	if err := s.setup(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte, udp bool) {
		out, fwd := s.handlePacket(in, nil, labHost, udp)
		if fwd != nil {
			t.Fatal("no upstreams configured, yet a query went upstream")
		}
		if out == nil {
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if !r.Response || len(in) < 2 || r.Id != uint16(in[0])<<8|uint16(in[1]) {
			t.Fatalf("answer header wrong: %v", r.MsgHdr)
		}
		req := new(dns.Msg)
		if err := req.Unpack(in); err != nil {
			t.Fatalf("answered a packet that does not parse: %v", err)
		}
		if udp && len(out) > s.cfg.udpLimit(req) {
			t.Fatalf("UDP answer of %d bytes exceeds the client's limit %d", len(out), s.cfg.udpLimit(req))
		}
	})
}

// FuzzQualifyHost checks that whatever a DHCP client calls itself, an
// accepted name is exactly one valid label in the zone.
func FuzzQualifyHost(f *testing.F) {
	for _, s := range []string{"smpc", "SMPC.lab", "a.b.lab", "my laptop", "", "-", "x.lab.", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		name, ok := QualifyHost(h, "lab.")
		if !ok {
			return
		}
		label, rest, _ := strings.Cut(name, ".")
		if rest != "lab." || label == "" || len(label) > 63 {
			t.Fatalf("%q -> %q", h, name)
		}
		if _, ok := dns.IsDomainName(name); !ok || CanonicalName(name) != name {
			t.Fatalf("%q -> %q is not a canonical domain name", h, name)
		}
	})
}
