package dnssrv

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

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
		out, fwd := s.handlePacket(context.Background(), in, nil, labHost, udp)
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

// fuzzUp is the fake upstream of FuzzUpstreamReply: it answers every query
// with the current fuzzed bytes (their ID patched as told), and over UDP
// then with a correct answer, the sentinel, as a real resolver's reply
// arriving after a forged one would.
var fuzzUp struct {
	once   sync.Once
	addr   string
	mu     sync.Mutex
	reply  []byte
	idMode byte   // 0: as fuzzed, 1: the query's ID, 2: another ID
	qid    uint16 // ID of the last query received
}

// sentinelA is the address in the sentinel answer.
var sentinelA = net.IPv4(192, 0, 2, 99)

func fuzzUpReply(query []byte) (fuzzed, sentinel []byte) {
	fuzzUp.mu.Lock()
	defer fuzzUp.mu.Unlock()
	if len(query) < 2 {
		return nil, nil
	}
	fuzzUp.qid = binary.BigEndian.Uint16(query)
	fuzzed = append([]byte(nil), fuzzUp.reply...)
	if len(fuzzed) >= 2 && fuzzUp.idMode != 0 {
		id := fuzzUp.qid
		if fuzzUp.idMode == 2 {
			id ^= 0x5a5a
		}
		binary.BigEndian.PutUint16(fuzzed, id)
	}
	q := new(dns.Msg)
	if q.Unpack(query) == nil && len(q.Question) == 1 {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA,
			Class: dns.ClassINET, Ttl: 60}, A: sentinelA})
		sentinel, _ = m.Pack()
	}
	return fuzzed, sentinel
}

func startFuzzUpstream(t *testing.T) {
	fuzzUp.once.Do(func() {
		pc, l, err := ListenUDPTCP(context.Background(), "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fuzzUp.addr = pc.LocalAddr().String()
		go func() { // lives as long as the test process
			buf := make([]byte, 65536)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				fuzzed, sentinel := fuzzUpReply(buf[:n])
				pc.WriteTo(fuzzed, from)
				if sentinel != nil {
					pc.WriteTo(sentinel, from)
				}
			}
		}()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					var hdr [2]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					q := make([]byte, binary.BigEndian.Uint16(hdr[:]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					fuzzed, _ := fuzzUpReply(q)
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(fuzzed))), fuzzed...))
				}()
			}
		}()
	})
}

// FuzzUpstreamReply forwards a query to an upstream whose reply is fuzzed.
// The server must never panic and must always answer the client's own
// question with the client's ID; it must never use a reply whose ID,
// question, QR bit or opcode does not match the query it sent (the answer
// is then SERVFAIL, or the correct reply that followed it); and what it
// does use, answered or cached, must come from that reply.
//
// mode bits 0-1 patch the reply's ID (as fuzzed, the query's, another);
// bit 2 asks with EDNS0 and DO; bit 3 asks as a TCP client (no
// truncation).
func FuzzUpstreamReply(f *testing.F) {
	q := query("fuzz.example.test.", dns.TypeA)
	ok := new(dns.Msg).SetReply(q)
	ok.RecursionAvailable = true
	ok.Answer = append(ok.Answer, &dns.A{Hdr: dns.RR_Header{Name: "fuzz.example.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 10)})
	f.Add(byte(1), wire(f, ok))
	f.Add(byte(2), wire(f, ok))
	f.Add(byte(5), wire(f, ok.Copy().SetEdns0(1232, true)))
	nx := new(dns.Msg).SetRcode(q, dns.RcodeNameError)
	nx.Ns = append(nx.Ns, &dns.SOA{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 30},
		Ns: "ns.example.test.", Mbox: "h.example.test.", Serial: 1, Minttl: 30})
	f.Add(byte(1), wire(f, nx))
	tc := ok.Copy()
	tc.Truncated = true
	f.Add(byte(9), wire(f, tc))
	other := new(dns.Msg).SetReply(query("evil.example.test.", dns.TypeA))
	other.Answer = append(other.Answer, &dns.A{Hdr: dns.RR_Header{Name: "evil.example.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 66)})
	f.Add(byte(1), wire(f, other))
	notReply := ok.Copy()
	notReply.Response = false
	f.Add(byte(1), wire(f, notReply))
	badvers := ok.Copy().SetEdns0(1232, false)
	badvers.Rcode = dns.RcodeBadVers
	f.Add(byte(1), wire(f, badvers))
	f.Add(byte(0), []byte{0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c})
	f.Add(byte(1), []byte{})

	f.Fuzz(func(t *testing.T, mode byte, reply []byte) {
		startFuzzUpstream(t)
		if len(reply) > DefaultUDPSize {
			reply = reply[:DefaultUDPSize] // what fits the forwarder's UDP read
		}
		fuzzUp.mu.Lock()
		fuzzUp.reply, fuzzUp.idMode = reply, mode&3
		if fuzzUp.idMode == 3 {
			fuzzUp.idMode = 1
		}
		fuzzUp.mu.Unlock()

		s := demoServer(demoLab())
		s.Upstreams = []string{fuzzUp.addr}
		s.UpstreamTimeout = 5 * time.Second
		if err := s.setup(); err != nil {
			t.Fatal(err)
		}
		req := query("Fuzz.Example.TEST.", dns.TypeA)
		if mode&4 != 0 {
			req.SetEdns0(4096, true)
		}
		udp := mode&8 == 0
		resp, fwd := s.respond(context.Background(), req, udp)
		if resp != nil || fwd == nil {
			t.Fatal("a fresh server did not forward")
		}
		out := s.finishForward(context.Background(), fwd, nil)
		if out == nil {
			t.Fatalf("no answer to the client (reply %x)", reply)
		}
		fuzzUp.mu.Lock()
		qid := fuzzUp.qid
		fuzzUp.mu.Unlock()

		// What the upstream sent first, and whether it may be used.
		sent := append([]byte(nil), reply...)
		if len(sent) >= 2 && mode&3 != 0 {
			id := qid
			if mode&3 == 2 {
				id ^= 0x5a5a
			}
			binary.BigEndian.PutUint16(sent, id)
		}
		up := new(dns.Msg)
		parsed := up.Unpack(sent) == nil
		usable := parsed && up.Id == qid && up.Response && up.Opcode == dns.OpcodeQuery &&
			len(up.Question) == 1 && up.Question[0].Qtype == dns.TypeA && up.Question[0].Qclass == dns.ClassINET &&
			strings.EqualFold(up.Question[0].Name, "fuzz.example.test.") && up.IsTsig() == nil && up.Rcode <= 0xF &&
			roundTrips(up)
		skipped := parsed && up.Id != qid // miekg reads on: the sentinel answers

		check := func(what string, b []byte) {
			r := new(dns.Msg)
			if err := r.Unpack(b); err != nil {
				t.Fatalf("%s does not parse: %v", what, err)
			}
			if r.Id != req.Id || !r.Response || len(r.Question) != 1 || r.Question[0] != req.Question[0] {
				t.Fatalf("%s is not an answer to the client's query: %v", what, r)
			}
			isSentinel := r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 && r.Answer[0].Header().Rrtype == dns.TypeA &&
				r.Answer[0].(*dns.A).A.Equal(sentinelA)
			switch {
			case isSentinel && skipped:
			case usable:
				if r.Rcode != up.Rcode {
					t.Fatalf("%s: rcode %d, the upstream said %d", what, r.Rcode, up.Rcode)
				}
				n := 0
				for _, rr := range up.Answer {
					if rr.Header().Rrtype != dns.TypeOPT {
						n++
					}
				}
				if len(r.Answer) > n || (!r.Truncated && len(r.Answer) != n) {
					t.Fatalf("%s: %d answers, the upstream sent %d", what, len(r.Answer), n)
				}
			default:
				if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
					t.Fatalf("%s: a reply that does not match the query was used (rcode %d, %d answers; parsed %v)\nreply %x",
						what, r.Rcode, len(r.Answer), parsed, sent)
				}
			}
		}
		check("the answer", out)
		if cached, fwd := s.respond(context.Background(), req, udp); fwd == nil && cached != nil {
			b := s.pack(cached, req, udp, nil)
			if b == nil {
				t.Fatal("a cached answer does not pack")
			}
			check("the cached answer", b)
		}
	})
}

// roundTrips reports whether m packs into a message that parses.
func roundTrips(m *dns.Msg) bool {
	b, err := m.Copy().Pack()
	return err == nil && new(dns.Msg).Unpack(b) == nil
}
