package dnssrv

// The server contract (package metalboot's documentation) and the seams:
// Validate reports every mistake, Listen binds, Serve never closes what it
// did not open, a failing RecordSource is SERVFAIL, never NXDOMAIN.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateReportsEveryMistake(t *testing.T) {
	s := &Server{
		Addr:            "127.0.0.1",
		Zones:           []string{"lab.", "bad..zone"},
		Hostname:        "bad..host",
		ReverseFor:      []netip.Prefix{{}},
		Allow:           []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}},
		Upstreams:       []string{"192.0.2.53", "resolver.example", "[::1]:99999"},
		TTL:             -time.Second,
		UDPSize:         100,
		UpstreamTimeout: -time.Second,
		TCPIdleTimeout:  -time.Second,
		MaxTCPConns:     -1,
	}
	err := s.Validate()
	require.Error(t, err)
	for _, field := range []string{"Addr:", "Zones[1]:", "Hostname:", "ReverseFor[0]:", "Allow[1]:",
		"Upstreams[1]:", "Upstreams[2]:", "TTL:", "UDPSize:", "UpstreamTimeout:", "TCPIdleTimeout:", "MaxTCPConns:"} {
		assert.Contains(t, err.Error(), field)
	}
	assert.NotContains(t, err.Error(), "Zones[0]")
	assert.NotContains(t, err.Error(), "Upstreams[0]")
	var n int
	var walk func(error)
	walk = func(e error) { // down the errors.Join tree to each mistake
		if j, ok := e.(interface{ Unwrap() []error }); ok && strings.Contains(e.Error(), "\n") {
			for _, p := range j.Unwrap() {
				walk(p)
			}
			return
		}
		n++
		assert.ErrorIs(t, e, ErrConfig)
	}
	walk(err)
	assert.Equal(t, 12, n, "one error per mistake")

	// Nothing binds or serves a bad configuration.
	_, _, err = s.Listen(context.Background())
	assert.ErrorIs(t, err, ErrConfig)
	assert.ErrorIs(t, s.ListenAndServe(context.Background()), ErrConfig)

	assert.NoError(t, (&Server{}).Validate(), "the zero Server is valid")
	assert.NoError(t, (&Server{RateLimit: -1, CacheSize: -1, MaxTCPConnsPerClient: -1}).Validate())
}

// The zero Allow is DefaultAllow(ReverseFor), which callers extend.
func TestDefaultAllow(t *testing.T) {
	lab := netip.MustParsePrefix("172.22.10.0/24")
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), lab},
		DefaultAllow([]netip.Prefix{lab}))
	s := demoServer(demoLab())
	require.NoError(t, s.setup())
	assert.Equal(t, DefaultAllow(s.ReverseFor), s.cfg.allow)
	assert.Nil(t, ask(t, s, netip.MustParseAddr("192.0.2.1"), query("mp.lab.", dns.TypeA)), "outside the default: dropped")
	assert.NotNil(t, ask(t, s, labHost, query("mp.lab.", dns.TypeA)))
}

// Listen opens UDP and TCP on one port; a bind error comes from Listen.
func TestListenReportsBindErrors(t *testing.T) {
	s := &Server{Addr: "127.0.0.1:0"}
	pc, l, err := s.Listen(context.Background())
	require.NoError(t, err)
	defer pc.Close()
	defer l.Close()
	assert.Equal(t, pc.LocalAddr().(*net.UDPAddr).Port, l.Addr().(*net.TCPAddr).Port)
	_, _, err = (&Server{Addr: pc.LocalAddr().String()}).Listen(context.Background())
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrConfig))
}

// Serve leaves the socket and the listener open and without deadlines:
// a second Serve on them works, and so do the caller's own reads.
func TestServeLeavesConnsOpen(t *testing.T) {
	s := demoServer(demoLab())
	pc, l, err := ListenUDPTCP(context.Background(), "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	defer l.Close()
	addr := pc.LocalAddr().String()
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, pc, l) }()
		for _, network := range []string{"udp", "tcp"} {
			r, _, err := (&dns.Client{Net: network}).Exchange(query("mp.lab.", dns.TypeA), addr)
			require.NoError(t, err, network)
			require.Len(t, r.Answer, 1, network)
		}
		cancel()
		require.NoError(t, <-done)
	}

	c, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("after"))
	require.NoError(t, err)
	require.NoError(t, pc.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 16)
	n, _, err := pc.ReadFrom(buf)
	require.NoError(t, err, "the UDP socket stays open and readable")
	assert.Equal(t, "after", string(buf[:n]))

	tc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer tc.Close()
	require.NoError(t, l.(*net.TCPListener).SetDeadline(time.Now().Add(10*time.Second)))
	ac, err := l.Accept()
	require.NoError(t, err, "the listener stays open and accepting")
	ac.Close()
}

// plainListener hides SetDeadline: Serve cannot interrupt its Accept.
type plainListener struct{ net.Listener }

// Serve returns when its context ends even with a Listener it cannot
// interrupt; the pending Accept ends when the caller closes it.
func TestServeWithPlainListener(t *testing.T) {
	s := demoServer(demoLab())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, nil, plainListener{l}) }()
	r, _, err := (&dns.Client{Net: "tcp"}).Exchange(query("mp.lab.", dns.TypeA), l.Addr().String())
	require.NoError(t, err)
	require.Len(t, r.Answer, 1)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	require.NoError(t, l.Close())
}

var errBackend = errors.New("inventory unreachable")

// A RecordSource that cannot answer makes the query SERVFAIL, never
// NXDOMAIN (which a client would cache), and is counted.
func TestRecordErrorsAreServfail(t *testing.T) {
	failing := RecordFuncs{
		Host: func(context.Context, string) ([]netip.Addr, error) { return nil, errBackend },
		Addr: func(context.Context, netip.Addr) ([]string, error) { return nil, errBackend },
	}
	s := demoServer(failing)
	for i, q := range []*dns.Msg{
		query("mp.lab.", dns.TypeA),
		query("nosuch.lab.", dns.TypeAAAA),
		query("50.10.22.172.in-addr.arpa.", dns.TypePTR),
		query("1.2.0.192.in-addr.arpa.", dns.TypePTR), // outside the lab zones
	} {
		r := ask(t, s, loopback, q)
		require.NotNil(t, r)
		assert.Equal(t, dns.RcodeServerFailure, r.Rcode, q.Question[0].Name)
		assert.Empty(t, r.Answer)
		assert.Empty(t, r.Ns)
		assert.False(t, r.Authoritative)
		assert.EqualValues(t, i+1, s.Stats().RecordErrors)
	}
	assert.Zero(t, s.Stats().Answered)

	// Behind First, a failing configured source is not skipped for the
	// leases after it (a client's "deploy" must not win that way).
	leases := new(Table)
	leases.Set("deploy.lab", labHost)
	s = demoServer(First(failing, leases))
	assert.Equal(t, dns.RcodeServerFailure, ask(t, s, loopback, query("deploy.lab.", dns.TypeA)).Rcode)
	s = demoServer(Multi(leases, failing))
	assert.Equal(t, dns.RcodeServerFailure, ask(t, s, loopback, query("deploy.lab.", dns.TypeA)).Rcode)
	_, err := First(leases, failing).LookupHost(context.Background(), "deploy.lab.")
	assert.NoError(t, err, "an answer from a source before the failing one stands")
}

// The record source gets the context Serve was given.
func TestRecordSourceGetsServeContext(t *testing.T) {
	type key struct{}
	seen := make(chan any, 4)
	src := RecordFuncs{Host: func(ctx context.Context, name string) ([]netip.Addr, error) {
		seen <- ctx.Value(key{})
		return []netip.Addr{labHost}, nil
	}}
	s := demoServer(src)
	pc, l, err := ListenUDPTCP(context.Background(), "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	defer l.Close()
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "serve"))
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, l) }()
	for _, network := range []string{"udp", "tcp"} {
		_, _, err := (&dns.Client{Net: network}).Exchange(query("mp.lab.", dns.TypeA), pc.LocalAddr().String())
		require.NoError(t, err)
		assert.Equal(t, "serve", <-seen, network)
	}
	cancel()
	require.NoError(t, <-done)
}

func TestSwap(t *testing.T) {
	var sw Swap
	assert.Nil(t, hosts(t, &sw, "mp.lab."), "the zero Swap finds nothing")
	assert.Nil(t, names(t, &sw, ip50))
	assert.Nil(t, sw.Load())
	old := new(Table)
	old.Set("mp.lab", ip50)
	sw.Store(old)
	assert.Equal(t, []netip.Addr{ip50}, hosts(t, &sw, "mp.lab."))
	s := demoServer(&sw)
	assert.Len(t, ask(t, s, loopback, query("mp.lab.", dns.TypeA)).Answer, 1)

	next := new(Table) // a reload: mp moved, smpc appeared
	next.Set("mp.lab", ip51)
	next.Set("smpc.lab", ip50)
	sw.Store(next)
	assert.Same(t, next, sw.Load())
	assert.Equal(t, []netip.Addr{ip51}, hosts(t, &sw, "mp.lab."))
	assert.Equal(t, []string{"smpc.lab."}, names(t, &sw, ip50))
	assert.Len(t, ask(t, s, loopback, query("smpc.lab.", dns.TypeA)).Answer, 1)
	sw.Store(nil)
	assert.Nil(t, hosts(t, &sw, "mp.lab."))
}

func TestLeaseNames(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	ln := &LeaseNames{Zone: "lab."}
	ln.now = clock.Now
	name, ok := ln.Bind("SMPC", ip50, clock.Now().Add(time.Hour))
	require.True(t, ok)
	assert.Equal(t, "smpc.lab.", name)
	assert.Equal(t, []netip.Addr{ip50}, hosts(t, ln, "smpc.lab."))
	assert.Equal(t, []string{"smpc.lab."}, names(t, ln, ip50))

	// A renewal at another address replaces the old one.
	ln.Bind("smpc.lab", ip51, clock.Now().Add(time.Hour))
	assert.Equal(t, []netip.Addr{ip51}, hosts(t, ln, "smpc.lab."))
	// A late release of the old address leaves the new one.
	ln.Unbind("smpc", ip50)
	assert.Equal(t, []netip.Addr{ip51}, hosts(t, ln, "smpc.lab."))
	ln.Unbind("smpc", ip51)
	assert.Nil(t, hosts(t, ln, "smpc.lab."))

	// Names outside the zone, or not host names, are refused.
	for _, bad := range []string{"evil.other", "a b", "", "deploy.lab.evil"} {
		_, ok := ln.Bind(bad, ip50, clock.Now().Add(time.Hour))
		assert.False(t, ok, bad)
	}
	assert.Zero(t, ln.Len())

	// Records expire with the lease.
	ln.Bind("mp", ip50, clock.Now().Add(time.Minute))
	clock.Advance(time.Minute)
	assert.Nil(t, hosts(t, ln, "mp.lab."))

	// The zero Zone is the root: single labels only.
	root := &LeaseNames{}
	name, ok = root.Bind("mp", ip50, time.Now().Add(time.Hour))
	assert.True(t, ok)
	assert.Equal(t, "mp.", name)
	_, ok = root.Bind("mp.lab", ip50, time.Now().Add(time.Hour))
	assert.False(t, ok)
}
