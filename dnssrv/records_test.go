package dnssrv

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	ip50  = netip.MustParseAddr("172.22.10.50")
	ip51  = netip.MustParseAddr("172.22.10.51")
	ip6db = netip.MustParseAddr("2001:db8::50")
)

func TestCanonicalName(t *testing.T) {
	assert.Equal(t, "mp.lab.", CanonicalName("MP.Lab"))
	assert.Equal(t, "mp.lab.", CanonicalName(" mp.lab. "))
	assert.Equal(t, ".", CanonicalName(""))
}

func TestTableSetDeleteRemove(t *testing.T) {
	var tab Table
	assert.Nil(t, hosts(t, &tab, "mp.lab."))
	tab.Set("MP.lab", ip50, ip6db, netip.Addr{})
	assert.Equal(t, []netip.Addr{ip50, ip6db}, hosts(t, &tab, "mp.lab."))
	assert.Equal(t, []string{"mp.lab."}, names(t, &tab, ip50))
	assert.Equal(t, []string{"mp.lab."}, names(t, &tab, netip.AddrFrom16(ip50.As16())), "v4-mapped")
	tab.Set("alias.lab", ip50)
	assert.ElementsMatch(t, []string{"mp.lab.", "alias.lab."}, names(t, &tab, ip50))

	tab.Set("mp.lab", ip51) // replaces
	assert.Equal(t, []netip.Addr{ip51}, hosts(t, &tab, "mp.lab."))
	assert.Equal(t, []string{"alias.lab."}, names(t, &tab, ip50))
	assert.Nil(t, names(t, &tab, ip6db))

	tab.Add("mp.lab", ip6db, time.Time{})
	assert.Equal(t, []netip.Addr{ip51, ip6db}, hosts(t, &tab, "mp.lab."))
	tab.Remove("mp.lab", ip50) // not its address: no-op
	assert.Len(t, hosts(t, &tab, "mp.lab."), 2)
	tab.Remove("mp.lab", ip51)
	assert.Equal(t, []netip.Addr{ip6db}, hosts(t, &tab, "mp.lab."))
	assert.Equal(t, 2, tab.Len())

	tab.Delete("alias.lab")
	assert.Nil(t, hosts(t, &tab, "alias.lab."))
	assert.Nil(t, names(t, &tab, ip50))
	tab.Set("mp.lab") // no addresses deletes
	assert.Zero(t, tab.Len())
}

func TestTableExpiry(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tab := &Table{now: clock.Now}
	tab.SetExpiring("a.lab", ip50, clock.Now().Add(time.Minute))
	tab.SetExpiring("b.lab", ip51, clock.Now().Add(time.Hour))
	tab.SetExpiring("c.lab", ip51, clock.Now().Add(-time.Second)) // already over
	assert.Nil(t, hosts(t, tab, "c.lab."))
	assert.Equal(t, []string{"b.lab."}, names(t, tab, ip51))
	assert.Equal(t, 2, tab.Len())

	clock.Advance(time.Minute)
	assert.Nil(t, hosts(t, tab, "a.lab."), "expired at exactly its expiry")
	assert.Nil(t, names(t, tab, ip50))
	assert.Equal(t, []netip.Addr{ip51}, hosts(t, tab, "b.lab."))
	assert.Equal(t, 1, tab.Len())

	// A write purges expired entries from memory.
	tab.Set("static.lab", ip6db)
	tab.mu.RLock()
	_, stillThere := tab.byName["a.lab."]
	_, addrThere := tab.byAddr[ip50]
	tab.mu.RUnlock()
	assert.False(t, stillThere)
	assert.False(t, addrThere)

	// Renewal moves the expiry.
	tab.SetExpiring("b.lab", ip51, clock.Now().Add(2*time.Hour))
	clock.Advance(90 * time.Minute)
	assert.Equal(t, []netip.Addr{ip51}, hosts(t, tab, "b.lab."))
}

func TestMulti(t *testing.T) {
	a, b := new(Table), new(Table)
	a.Set("mp.lab", ip50)
	b.Set("mp.lab", ip50, ip6db)
	b.Set("other.lab", ip50)
	m := Multi(a, nil, b)
	assert.Equal(t, []netip.Addr{ip50, ip6db}, hosts(t, m, "mp.lab."))
	assert.Equal(t, []string{"mp.lab.", "other.lab."}, names(t, m, ip50))
	assert.Nil(t, hosts(t, Multi(), "mp.lab."))
}

func TestReverseZones(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"172.22.10.0/24", []string{"10.22.172.in-addr.arpa."}},
		{"172.22.10.7/24", []string{"10.22.172.in-addr.arpa."}},
		{"172.22.0.0/16", []string{"22.172.in-addr.arpa."}},
		{"172.22.10.0/23", []string{"10.22.172.in-addr.arpa.", "11.22.172.in-addr.arpa."}},
		{"10.0.0.0/7", []string{"10.in-addr.arpa.", "11.in-addr.arpa."}},
		{"172.22.10.64/26", []string{"64.10.22.172.in-addr.arpa.", "65.10.22.172.in-addr.arpa."}},
		{"172.22.10.50/32", []string{"50.10.22.172.in-addr.arpa."}},
		{"2001:db8:1::/48", []string{"1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."}},
		{"2001:db8:1::/47", []string{"0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."}},
		{"fd00::/6", []string{"c.f.ip6.arpa.", "d.f.ip6.arpa.", "e.f.ip6.arpa.", "f.f.ip6.arpa."}},
	} {
		got := ReverseZones(netip.MustParsePrefix(tc.prefix))
		if tc.prefix == "172.22.10.64/26" {
			require.Len(t, got, 64)
			assert.Equal(t, tc.want, got[:2])
			assert.Equal(t, "127.10.22.172.in-addr.arpa.", got[63])
			continue
		}
		assert.Equal(t, tc.want, got, tc.prefix)
	}
}

func TestParseReverse(t *testing.T) {
	a, partial, ok := parseReverse("50.10.22.172.in-addr.arpa.")
	assert.True(t, ok)
	assert.False(t, partial)
	assert.Equal(t, ip50, a)
	_, partial, ok = parseReverse("10.22.172.in-addr.arpa.")
	assert.True(t, ok && partial)
	for _, bad := range []string{"256.10.22.172.in-addr.arpa.", "x.10.22.172.in-addr.arpa.",
		"1.50.10.22.172.in-addr.arpa.", "050.10.22.172.in-addr.arpa.", "..in-addr.arpa.", "mp.lab."} {
		_, _, ok := parseReverse(bad)
		assert.False(t, ok, bad)
	}
	v6 := "0.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
	a, partial, ok = parseReverse(v6)
	assert.True(t, ok)
	assert.False(t, partial)
	assert.Equal(t, ip6db, a)
	_, partial, ok = parseReverse("8.b.d.0.1.0.0.2.ip6.arpa.")
	assert.True(t, ok && partial)
	_, _, ok = parseReverse("g.b.d.0.1.0.0.2.ip6.arpa.")
	assert.False(t, ok)
}

func TestFirst(t *testing.T) {
	static, leases := new(Table), new(Table)
	static.Set("deploy.lab", netip.MustParseAddr("172.22.10.2"))
	leases.Set("deploy.lab", ip51) // a DHCP client calling itself "deploy"
	leases.Set("smpc.lab", ip50)
	f := First(static, nil, leases)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("172.22.10.2")}, hosts(t, f, "deploy.lab."))
	assert.Equal(t, []netip.Addr{ip50}, hosts(t, f, "smpc.lab."))
	assert.Equal(t, []string{"deploy.lab."}, names(t, f, ip51), "reverse still comes from the lease")
	assert.Nil(t, hosts(t, f, "nosuch.lab."))
	assert.Nil(t, names(t, First(), ip50))
}

func TestQualifyHost(t *testing.T) {
	for in, want := range map[string]string{
		"smpc": "smpc.lab.", "SMPC": "smpc.lab.", "smpc.lab": "smpc.lab.", "smpc.LAB.": "smpc.lab.",
		"node-01": "node-01.lab.", " mp ": "mp.lab.",
	} {
		got, ok := QualifyHost(in, "lab")
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "-x", "x-", "my laptop", "evil.other", "a.b.lab", "x_y", "ü",
		"deploy.lab.evil", strings.Repeat("a", 64), "..lab"} {
		_, ok := QualifyHost(bad, "lab.")
		assert.False(t, ok, bad)
	}
}

func TestRecordFuncs(t *testing.T) {
	src := RecordFuncs{Host: func(_ context.Context, name string) ([]netip.Addr, error) {
		if name == "mp.lab." {
			return []netip.Addr{ip50}, nil
		}
		return nil, nil
	}}
	assert.Equal(t, []netip.Addr{ip50}, hosts(t, src, "mp.lab."))
	assert.Nil(t, names(t, src, ip50), "nil Addr func finds nothing")
	s := demoServer(Multi(src))
	require.NoError(t, s.setup())
	r := ask(t, s, loopback, query("MP.lab.", dns.TypeA))
	require.Len(t, r.Answer, 1)
}

// hosts is src.LookupHost for a source that must not fail.
func hosts(t *testing.T, src RecordSource, name string) []netip.Addr {
	t.Helper()
	as, err := src.LookupHost(context.Background(), name)
	require.NoError(t, err)
	return as
}

// names is src.LookupAddr for a source that must not fail.
func names(t *testing.T, src RecordSource, addr netip.Addr) []string {
	t.Helper()
	ns, err := src.LookupAddr(context.Background(), addr)
	require.NoError(t, err)
	return ns
}
