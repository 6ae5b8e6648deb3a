package dnssrv

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	loopback = netip.MustParseAddr("127.0.0.1")
	labHost  = netip.MustParseAddr("172.22.10.60")
)

func query(name string, qt uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qt)
	return m
}

func wire(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	require.NoError(t, err)
	return b
}

// ask runs one packet through the server's packet path, as the UDP loop does.
func ask(t *testing.T, s *Server, from netip.Addr, m *dns.Msg) *dns.Msg {
	t.Helper()
	require.NoError(t, s.setup())
	b, fwd := s.handlePacket(context.Background(), wire(t, m), nil, from, true)
	require.Nil(t, fwd)
	if b == nil {
		return nil
	}
	r := new(dns.Msg)
	require.NoError(t, r.Unpack(b))
	return r
}

func TestHandlePacketRcodes(t *testing.T) {
	s := demoServer(demoLab())

	r := ask(t, s, loopback, query("mp.lab.", dns.TypeA))
	require.NotNil(t, r)
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)
	assert.True(t, r.Authoritative)

	r = ask(t, s, loopback, query("mp.lab.", dns.TypeANY))
	require.Len(t, r.Answer, 1)

	// An empty non-terminal of a reverse zone is NODATA, not NXDOMAIN.
	big := &Server{Zones: []string{"lab"}, ReverseFor: []netip.Prefix{netip.MustParsePrefix("172.22.0.0/16")}, Records: demoLab()}
	r = ask(t, big, loopback, query("10.22.172.in-addr.arpa.", dns.TypePTR))
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)
	assert.Empty(t, r.Answer)
	r = ask(t, big, loopback, query("50.10.22.172.in-addr.arpa.", dns.TypePTR))
	require.Len(t, r.Answer, 1)
	assert.Equal(t, "mp.lab.", r.Answer[0].(*dns.PTR).Ptr)
	r = ask(t, big, loopback, query("1.50.10.22.172.in-addr.arpa.", dns.TypePTR))
	assert.Equal(t, dns.RcodeNameError, r.Rcode)

	// IPv6: AAAA and ip6.arpa PTR.
	tab := demoLab()
	tab.Add("mp.lab", netip.MustParseAddr("2001:db8:10::50"), time.Time{})
	v6 := &Server{Zones: []string{"lab"}, ReverseFor: []netip.Prefix{netip.MustParsePrefix("2001:db8:10::/48")}, Records: tab}
	r = ask(t, v6, loopback, query("mp.lab.", dns.TypeAAAA))
	require.Len(t, r.Answer, 1)
	assert.Equal(t, "2001:db8:10::50", r.Answer[0].(*dns.AAAA).AAAA.String())
	arpa, err := dns.ReverseAddr("2001:db8:10::50")
	require.NoError(t, err)
	r = ask(t, v6, loopback, query(arpa, dns.TypePTR))
	require.Len(t, r.Answer, 1)
	assert.Equal(t, "mp.lab.", r.Answer[0].(*dns.PTR).Ptr)
	arpa, _ = dns.ReverseAddr("2001:db8:10::51")
	r = ask(t, v6, loopback, query(arpa, dns.TypePTR))
	assert.Equal(t, dns.RcodeNameError, r.Rcode)
	assert.Equal(t, "0.1.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", r.Ns[0].Header().Name)

	notify := query("lab.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	r = ask(t, s, loopback, notify)
	assert.Equal(t, dns.RcodeNotImplemented, r.Rcode)

	two := query("mp.lab.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	r = ask(t, s, loopback, two)
	assert.Equal(t, dns.RcodeFormatError, r.Rcode)

	chaos := query("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	r = ask(t, s, loopback, chaos)
	assert.Equal(t, dns.RcodeRefused, r.Rcode)

	// A packet with QR set is a response: never answered (reflection loops).
	resp := query("mp.lab.", dns.TypeA)
	resp.Response = true
	assert.Nil(t, ask(t, s, loopback, resp))
	assert.EqualValues(t, 1, s.Stats().Malformed)
}

func TestAllowDefaultsToLoopbackAndLab(t *testing.T) {
	s := demoServer(demoLab())
	assert.NotNil(t, ask(t, s, loopback, query("mp.lab.", dns.TypeA)))
	assert.NotNil(t, ask(t, s, netip.MustParseAddr("::1"), query("mp.lab.", dns.TypeA)))
	assert.NotNil(t, ask(t, s, labHost, query("mp.lab.", dns.TypeA)))
	assert.Nil(t, ask(t, s, netip.MustParseAddr("198.51.100.1"), query("mp.lab.", dns.TypeA)))
	assert.Nil(t, ask(t, s, netip.MustParseAddr("::ffff:198.51.100.1"), query("mp.lab.", dns.TypeA)))
	assert.EqualValues(t, 2, s.Stats().Denied)
}

func TestRateLimit(t *testing.T) {
	s := demoServer(demoLab())
	s.RateLimit = 5
	var answered, truncated, dropped int
	for range 100 {
		r := ask(t, s, labHost, query("mp.lab.", dns.TypeA))
		switch {
		case r == nil:
			dropped++
		case r.Truncated:
			assert.Empty(t, r.Answer)
			truncated++
		default:
			answered++
		}
	}
	// 100 queries take far less than the 19 s it would need to refill 95 tokens.
	assert.Less(t, answered, 50)
	assert.Positive(t, truncated, "every second limited query slips a TC reply")
	assert.Positive(t, dropped)
	assert.EqualValues(t, truncated+dropped, s.Stats().RateLimited)
	// Loopback is never limited.
	for range 20 {
		r := ask(t, s, loopback, query("mp.lab.", dns.TypeA))
		require.NotNil(t, r)
		require.False(t, r.Truncated)
	}
}

func TestLimiterRefills(t *testing.T) {
	l := newLimiter(2)
	t0 := time.Unix(1000, 0)
	assert.Equal(t, limitPass, l.allow(labHost, t0))
	assert.Equal(t, limitPass, l.allow(labHost, t0))
	assert.Equal(t, limitDrop, l.allow(labHost, t0))
	assert.Equal(t, limitSlip, l.allow(labHost, t0))
	assert.Equal(t, limitPass, l.allow(netip.MustParseAddr("172.22.11.1"), t0), "another /24 has its own bucket")
	assert.Equal(t, limitDrop, l.allow(netip.MustParseAddr("172.22.10.200"), t0), "same /24 shares it")
	assert.Equal(t, limitPass, l.allow(labHost, t0.Add(500*time.Millisecond)))
	for i := range limiterMaxEntries + 10 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), t0.Add(2*time.Second))
	}
	assert.LessOrEqual(t, len(l.m), limiterMaxEntries)
}

func TestMalformedOverUDP(t *testing.T) {
	s := demoServer(demoLab())
	addr := start(t, s)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	require.NoError(t, err)
	defer c.Close()
	good := wire(t, query("mp.lab.", dns.TypeA))
	for _, bad := range [][]byte{
		{}, {0x12}, good[:11], good[:len(good)-3],
		append(append([]byte{}, good[:12]...), 0xff, 0xff, 0xff),
		append([]byte{0, 1, 0x81, 0x80}, good[4:]...), // QR set
	} {
		_, err := c.Write(bad)
		require.NoError(t, err)
	}
	_, err = c.Write(good)
	require.NoError(t, err)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	require.NoError(t, err)
	r := new(dns.Msg)
	require.NoError(t, r.Unpack(buf[:n]))
	assert.Equal(t, dns.RcodeSuccess, r.Rcode, "the only answer is to the good query")
	// Two readers may still be counting: wait for all six drops.
	assert.Eventually(t, func() bool { return s.Stats().Malformed == 6 }, 5*time.Second, 10*time.Millisecond,
		"all six bad packets dropped and counted: %+v", s.Stats())
}

func TestServeDNSMountsInMiekgServer(t *testing.T) {
	s := demoServer(demoLab())
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &dns.Server{PacketConn: pc, Handler: s}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	r, _, err := new(dns.Client).Exchange(query("mp.lab.", dns.TypeA), pc.LocalAddr().String())
	require.NoError(t, err)
	require.Len(t, r.Answer, 1)
	assert.Equal(t, "172.22.10.50", r.Answer[0].(*dns.A).A.String())
}

func TestServeErrors(t *testing.T) {
	s := &Server{Zones: []string{"bad..zone"}}
	err := s.Serve(context.Background(), nil, nil)
	assert.ErrorIs(t, err, ErrConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, bad := range []string{"resolver.example", "127.0.0.1:x", "[::1]:99999"} {
		s = &Server{Addr: "127.0.0.1:0", Upstreams: []string{bad}}
		assert.ErrorIs(t, s.ListenAndServe(ctx), ErrConfig, bad)
	}
	for _, good := range []string{"192.0.2.53", "[2001:db8::53]", "2001:db8::53", "192.0.2.53:5353"} {
		_, err := newForwarder([]string{good}, 0, 0, 1232)
		assert.NoError(t, err, good)
	}
	assert.ErrorIs(t, (&Server{}).Serve(context.Background(), nil, nil), ErrNoListener)
}

func TestListenAndServeStopsWithContext(t *testing.T) {
	s := demoServer(demoLab())
	s.Addr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return")
	}
}

func TestCacheTTLAndLRU(t *testing.T) {
	m := new(dns.Msg)
	m.Answer = []dns.RR{
		&dns.A{Hdr: dns.RR_Header{Name: "a.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}},
		&dns.A{Hdr: dns.RR_Header{Name: "a.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 20}},
	}
	ttl, ok := cacheTTL(m)
	assert.True(t, ok)
	assert.Equal(t, 20*time.Second, ttl)
	m.Rcode = dns.RcodeServerFailure
	_, ok = cacheTTL(m)
	assert.False(t, ok)
	neg := new(dns.Msg)
	neg.Rcode = dns.RcodeNameError
	neg.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Ttl: 86400}, Minttl: 86400}}
	ttl, ok = cacheTTL(neg)
	assert.True(t, ok)
	assert.Equal(t, maxNegativeTTL, ttl)

	c := newCache(2)
	now := time.Unix(0, 0)
	c.put("a", m, time.Minute, now)
	c.put("b", m, time.Minute, now)
	got, _ := c.get("a", now) // a is now most recent
	assert.NotNil(t, got)
	c.put("c", m, time.Minute, now)
	got, _ = c.get("b", now)
	assert.Nil(t, got, "least recently used evicted")
	got, age := c.get("a", now.Add(30*time.Second))
	assert.NotNil(t, got)
	assert.EqualValues(t, 30, age)
	got, _ = c.get("a", now.Add(time.Minute))
	assert.Nil(t, got, "expired")
	assert.Equal(t, 1, c.len())
}

// BenchmarkHandlePacket measures the per-query work of the UDP loop (parse,
// look up, pack), without the sockets.
func BenchmarkHandlePacket(b *testing.B) {
	for _, bc := range []struct {
		name string
		m    *dns.Msg
	}{
		{"A", query("mp.lab.", dns.TypeA)},
		{"PTR", query("50.10.22.172.in-addr.arpa.", dns.TypePTR)},
		{"NXDOMAIN", query("nosuch.lab.", dns.TypeA)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := demoServer(demoLab())
			if err := s.setup(); err != nil {
				b.Fatal(err)
			}
			in := wire(b, bc.m)
			out := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if r, _ := s.handlePacket(context.Background(), in, out[:cap(out)], loopback, true); r == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
}

// brokenListener fails Accept with a permanent error.
type brokenListener struct{ net.Listener }

func (brokenListener) Accept() (net.Conn, error) { return nil, errors.New("accept exploded") }

func TestServeReturnsListenerError(t *testing.T) {
	s := demoServer(demoLab())
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), pc, brokenListener{l}) }()
	select {
	case err := <-done:
		assert.ErrorContains(t, err, "accept exploded")
	case <-time.After(10 * time.Second):
		t.Fatal("Serve kept running after its listener failed")
	}
}

func TestTCPPipelineAndMalformed(t *testing.T) {
	s := demoServer(demoLab())
	addr := start(t, s)
	c, err := net.Dial("tcp", addr.String())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	frame := func(b []byte) []byte { return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...) }
	q1, q2 := query("mp.lab.", dns.TypeA), query("smpc.lab.", dns.TypeA)
	var batch []byte
	batch = append(batch, frame(wire(t, q1))...)
	batch = append(batch, frame([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})...) // framed garbage
	batch = append(batch, frame(wire(t, q2))...)
	_, err = c.Write(batch)
	require.NoError(t, err)
	for _, want := range []struct {
		id   uint16
		addr string
	}{{q1.Id, "172.22.10.50"}, {q2.Id, "172.22.10.54"}} {
		var hdr [2]byte
		_, err := io.ReadFull(c, hdr[:])
		require.NoError(t, err)
		b := make([]byte, int(hdr[0])<<8|int(hdr[1]))
		_, err = io.ReadFull(c, b)
		require.NoError(t, err)
		r := new(dns.Msg)
		require.NoError(t, r.Unpack(b))
		assert.Equal(t, want.id, r.Id)
		require.Len(t, r.Answer, 1)
		assert.Equal(t, want.addr, r.Answer[0].(*dns.A).A.String())
	}
	assert.EqualValues(t, 1, s.Stats().Malformed)
}
