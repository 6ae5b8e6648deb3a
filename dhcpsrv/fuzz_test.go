package dhcpsrv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// FuzzHandlePacket feeds arbitrary datagrams to the packet path of a normal
// server and of a proxyDHCP server on ports 67 and 4011: nothing may panic,
// every reply must decode again, and neither a reply nor a stored lease
// carries a host name or UUID that fails validation.
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
	for _, h := range []string{"Node-7", "evil\nruncmd: [reboot]", "a b"} {
		hd, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptHostName(h)))
		f.Add(hd.ToBytes())
		hr, _ := dhcpv4.NewRequestFromOffer(d, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 99, 0, 101))),
			dhcpv4.WithOption(dhcpv4.OptHostName(h)))
		hr.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
		f.Add(hr.ToBytes())
	}

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
				resp, err := dhcpv4.FromBytes(out)
				if err != nil {
					t.Fatalf("reply does not decode: %v", err)
				}
				if resp.Options.Has(dhcpv4.OptionHostName) {
					if h, ok := ValidHostname(resp.HostName()); !ok || h != resp.HostName() {
						t.Fatalf("reply carries host name %q", resp.HostName())
					}
				}
			}
			leases, err := s.store.(*Journal).Leases()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range leases {
				if h, ok := ValidHostname(l.Hostname); l.Hostname != "" && (!ok || h != l.Hostname) {
					t.Fatalf("stored host name %q", l.Hostname)
				}
				if l.UUID != "" && !ValidUUID(l.UUID) {
					t.Fatalf("stored UUID %q", l.UUID)
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

// FuzzJournalReplay writes arbitrary bytes as a lease journal and opens
// it (with reseal, after giving each record-like line a valid checksum). OpenJournal must not panic; it either fails with an error wrapping
// ErrCorrupt that points into the file, leaving the file unchanged, or it
// opens, and then the leases it reports are self-consistent and survive a
// reopen unchanged.
func FuzzJournalReplay(f *testing.F) {
	dir := f.TempDir()
	j, err := OpenJournal(dir)
	if err != nil {
		f.Fatal(err)
	}
	exp := time.Unix(2e9, 0)
	for i := range 3 {
		l := Lease{IP: netip.AddrFrom4([4]byte{10, 99, 0, byte(100 + i)}), MAC: hwaddr.MAC{2, 0, 0, 0, 0, byte(i + 1)},
			Hostname: "node" + string(rune('0'+i)), UUID: "33323130-3534-3736-3839-616263646566", Arch: ArchEFIx64, Expires: exp}
		if i == 2 {
			l.MAC, l.Hostname, l.UUID, l.State = hwaddr.MAC{}, "", "", StateDeclined
		}
		if _, err := j.CompareAndSwap(context.Background(), 0, l); err != nil {
			f.Fatal(err)
		}
	}
	l0, _ := j.Get(context.Background(), netip.MustParseAddr("10.99.0.100"))
	_ = j.CompareAndDelete(context.Background(), l0.IP, l0.Rev)
	if err := j.Close(); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(JournalPath(dir))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, false)
	f.Add(good[:len(good)-7], false)                 // torn last record
	f.Add(append(bytes.Clone(good), good...), false) // replayed twice
	f.Add(append(bytes.Clone(good), 0, 0, 0), false) // zero tail
	f.Add([]byte{}, false)                           // empty
	f.Add(make([]byte, 64), false)                   // zeros
	f.Add([]byte("garbage\n"), false)                // garbage
	f.Add(appendLine(nil, record{Op: "put", Rev: 1, IP: netip.MustParseAddr("10.0.0.1"), MAC: hwaddr.MAC{2, 0, 0, 0, 0, 9}, Hostname: "Bad Name"}), false)
	f.Add([]byte(`00000000 {"op":"put","rev":1,"ip":"10.0.0.1","mac":"02:00:00:00:00:01","host":"x"}`+"\n"), true)
	f.Add([]byte(`00000000 {"op":"rev","rev":1}`+"\n"+`00000000 {"op":"put","rev":2,"ip":"10.0.0.2","state":2}`+"\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, reseal bool) {
		if reseal {
			data = resealLines(data)
		}
		dir := t.TempDir()
		path := JournalPath(dir)
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
		j, err := OpenJournal(dir)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			var je *JournalError
			if !errors.As(err, &je) {
				t.Fatalf("not a *JournalError: %v", err)
			}
			if je.File != path || je.Offset < 0 || je.Offset >= int64(len(data)) ||
				!bytes.HasPrefix(data[je.Offset:], []byte(strings.TrimSuffix(je.Record, "…"))) {
				t.Fatalf("error does not point into the file: %v", err)
			}
			after, rerr := os.ReadFile(path)
			if rerr != nil || !bytes.Equal(after, data) {
				t.Fatalf("corrupt journal was changed (%v)", rerr)
			}
			return
		}
		defer j.Close()
		rep := j.Recovery()
		if rep.TornBytes > 0 && rep.TornOffset+int64(rep.TornBytes) != int64(len(data)) {
			t.Fatalf("torn record %d+%d is not the end of %d bytes", rep.TornOffset, rep.TornBytes, len(data))
		}
		leases := checkLeases(t, j)
		if j.Len() != len(leases) {
			t.Fatalf("Len %d, %d leases", j.Len(), len(leases))
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j2, err := OpenJournal(dir)
		if err != nil {
			t.Fatalf("the journal OpenJournal wrote does not open: %v", err)
		}
		defer j2.Close()
		if r := j2.Recovery(); r.TornBytes != 0 || r.BadHostnames != 0 || r.BadUUIDs != 0 {
			t.Fatalf("rewritten journal needed recovery: %+v", r)
		}
		again := checkLeases(t, j2)
		if len(again) != len(leases) {
			t.Fatalf("reopen: %d leases, had %d", len(again), len(leases))
		}
		for i := range leases {
			a, b := leases[i], again[i]
			if a.IP != b.IP || a.MAC != b.MAC || a.Hostname != b.Hostname || a.UUID != b.UUID || a.Arch != b.Arch ||
				a.State != b.State || a.Rev != b.Rev || !a.Expires.Equal(b.Expires) {
				t.Fatalf("reopen changed a lease: %+v became %+v", a, b)
			}
		}
	})
}

// resealLines gives every line that looks like a journal record ("<8
// characters> <body>") the right checksum, so the fuzzer gets past the CRC
// into JSON decoding and record checks.
func resealLines(data []byte) []byte {
	out := make([]byte, 0, len(data))
	for len(data) > 0 {
		n := bytes.IndexByte(data, '\n') + 1
		if n == 0 {
			n = len(data)
		}
		line := bytes.Clone(data[:n])
		data = data[n:]
		if len(line) > 9 && line[8] == ' ' {
			body := bytes.TrimSuffix(line[9:], []byte("\n"))
			copy(line, fmt.Sprintf("%08x", crc32.ChecksumIEEE(body)))
		}
		out = append(out, line...)
	}
	return out
}

// checkLeases checks the invariants of a replayed journal and returns its
// leases.
func checkLeases(t *testing.T, j *Journal) []Lease {
	t.Helper()
	leases, err := j.Leases()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, l := range leases {
		if !l.IP.Is4() || seen[l.IP] {
			t.Fatalf("bad or repeated address: %+v", l)
		}
		seen[l.IP] = true
		if l.Rev == 0 || l.State > StateDeclined {
			t.Fatalf("bad revision or state: %+v", l)
		}
		if l.State != StateDeclined && l.MAC.IsZero() {
			t.Fatalf("lease without MAC: %+v", l)
		}
		if h, ok := ValidHostname(l.Hostname); l.Hostname != "" && (!ok || h != l.Hostname) {
			t.Fatalf("invalid host name kept: %q", l.Hostname)
		}
		if l.UUID != "" && !ValidUUID(l.UUID) {
			t.Fatalf("invalid UUID kept: %q", l.UUID)
		}
		if got, err := j.Get(context.Background(), l.IP); err != nil || got.Rev != l.Rev {
			t.Fatalf("Get(%s) = %+v, %v", l.IP, got, err)
		}
		if !l.MAC.IsZero() {
			if got, err := j.ByMAC(context.Background(), l.MAC); err != nil || got.MAC != l.MAC {
				t.Fatalf("ByMAC(%s) = %+v, %v", l.MAC, got, err)
			}
		}
	}
	return leases
}

// hostnameOracle is RFC 1123 as a regular expression (lengths apart). The
// letters are spelt out: (?i) folds Unicode, so it took "ſ" (U+017F, which
// folds to "s") and "K" (the Kelvin sign) for ASCII letters, as the fuzzer
// found.
var hostnameOracle = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*\.?$`)

// FuzzValidHostname checks ValidHostname against a regular expression and
// the length rules, and that what it returns is canonical.
func FuzzValidHostname(f *testing.F) {
	for _, s := range []string{"node7", "Node-7.lab.", "a..b", "-a", "a-", "ü", "a b", "", ".", strings.Repeat("a", 64), "x\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := ValidHostname(s)
		trimmed := s
		if len(s) > 1 {
			trimmed = strings.TrimSuffix(s, ".")
		}
		want := hostnameOracle.MatchString(s) && len(trimmed) <= 253
		for _, label := range strings.Split(trimmed, ".") {
			if len(label) > 63 {
				want = false
			}
		}
		if ok != want {
			t.Fatalf("ValidHostname(%q) = %v, oracle says %v", s, ok, want)
		}
		if !ok {
			if h != "" {
				t.Fatalf("ValidHostname(%q) returned %q with false", s, h)
			}
			return
		}
		if h != strings.ToLower(trimmed) {
			t.Fatalf("ValidHostname(%q) = %q", s, h)
		}
		if h2, ok2 := ValidHostname(h); !ok2 || h2 != h {
			t.Fatalf("not canonical: %q -> %q, %v", h, h2, ok2)
		}
	})
}

// FuzzParseClientInfo feeds arbitrary values of options 93, 60, 97 and 77
// to ParseClientInfo: nothing may panic, the UUID is always in a form
// ValidUUID accepts (or empty), and the flags follow option 60.
func FuzzParseClientInfo(f *testing.F) {
	f.Add([]byte{0, 7}, "PXEClient:Arch:00007:UNDI:003016", append([]byte{0}, "0123456789abcdef"...), []byte("\x04iPXE"))
	f.Add([]byte{}, "HTTPClient", []byte{}, []byte{})
	f.Add([]byte{0xff}, "PXEClient:Arch:9", []byte{1, 2, 3}, []byte{0xff})
	f.Fuzz(func(t *testing.T, arch []byte, vendor string, uuid, userClass []byte) {
		req, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1})
		if err != nil {
			t.Fatal(err)
		}
		for code, v := range map[dhcpv4.OptionCode][]byte{
			dhcpv4.OptionClientSystemArchitectureType: arch,
			dhcpv4.OptionClassIdentifier:              []byte(vendor),
			dhcpv4.OptionClientMachineIdentifier:      uuid,
			dhcpv4.OptionUserClassInformation:         userClass,
		} {
			if len(v) > 0 {
				req.UpdateOption(dhcpv4.OptGeneric(code, v))
			}
		}
		// through the wire format, as the server sees it
		req, err = dhcpv4.FromBytes(req.ToBytes())
		if err != nil {
			return
		}
		ci := ParseClientInfo(req)
		if ci.UUID != "" && !ValidUUID(ci.UUID) {
			t.Fatalf("UUID %q from %x", ci.UUID, uuid)
		}
		if ci.PXE != strings.HasPrefix(ci.VendorClass, "PXEClient") || ci.HTTPClient != strings.HasPrefix(ci.VendorClass, "HTTPClient") {
			t.Fatalf("flags %+v do not follow option 60", ci)
		}
		if a := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(a) >= 2 {
			want := Arch(uint16(a[0])<<8 | uint16(a[1]))
			if want == ArchUnknown && ci.HTTPClient {
				want = ArchEFIx64HTTP // an HTTP-boot client of unknown architecture: x86-64, as ParseClientInfo documents
			}
			if ci.Arch != want {
				t.Fatalf("arch %v from option 93 %x", ci.Arch, a)
			}
		}
	})
}
