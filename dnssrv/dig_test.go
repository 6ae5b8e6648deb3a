package dnssrv

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDigDemoLab(t *testing.T) {
	needDig(t)
	s := demoServer(demoLab())
	addr := start(t, s)

	t.Run("forward A", func(t *testing.T) {
		r := dig(t, addr, "mp.lab", "A")
		require.Equal(t, "NOERROR", r.status, r.out)
		assert.Equal(t, []string{"mp.lab. 60 IN A 172.22.10.50"}, r.answer, r.out)
		assert.True(t, r.hasFlag("aa"), "authoritative flag: %s", r.out)
		assert.False(t, r.hasFlag("ra"), "no recursion without upstreams: %s", r.out)
	})
	t.Run("case insensitive, case preserved", func(t *testing.T) {
		r := dig(t, addr, "DePloy.LAB", "A")
		require.Equal(t, "NOERROR", r.status, r.out)
		assert.Equal(t, []string{"DePloy.LAB. 60 IN A 172.22.10.2"}, r.answer, r.out)
	})
	t.Run("reverse", func(t *testing.T) {
		r := dig(t, addr, "-x", "172.22.10.50")
		require.Equal(t, "NOERROR", r.status, r.out)
		assert.Equal(t, []string{"50.10.22.172.in-addr.arpa. 60 IN PTR mp.lab."}, r.answer, r.out)
		assert.True(t, r.hasFlag("aa"), r.out)
	})
	t.Run("reverse unknown is NXDOMAIN", func(t *testing.T) {
		r := dig(t, addr, "-x", "172.22.10.99")
		require.Equal(t, "NXDOMAIN", r.status, r.out)
		require.Len(t, r.authority, 1, r.out)
		assert.Contains(t, r.authority[0], "10.22.172.in-addr.arpa. 60 IN SOA ns.lab. hostmaster.lab.", r.out)
	})
	t.Run("NXDOMAIN", func(t *testing.T) {
		r := dig(t, addr, "nosuch.lab", "A")
		require.Equal(t, "NXDOMAIN", r.status, r.out)
		assert.Empty(t, r.answer, r.out)
		require.Len(t, r.authority, 1, r.out)
		assert.Contains(t, r.authority[0], "lab. 60 IN SOA ns.lab. hostmaster.lab.", r.out)
		assert.True(t, r.hasFlag("aa"), r.out)
	})
	t.Run("NODATA", func(t *testing.T) {
		for _, qt := range []string{"AAAA", "MX", "TXT"} {
			r := dig(t, addr, "mp.lab", qt)
			require.Equal(t, "NOERROR", r.status, "%s: %s", qt, r.out)
			assert.Empty(t, r.answer, r.out)
			require.Len(t, r.authority, 1, r.out)
			assert.Contains(t, r.authority[0], "lab. 60 IN SOA", r.out)
		}
	})
	t.Run("SOA and NS at the apex", func(t *testing.T) {
		r := dig(t, addr, "lab", "SOA")
		require.Equal(t, "NOERROR", r.status, r.out)
		require.Len(t, r.answer, 1, r.out)
		assert.True(t, strings.HasPrefix(r.answer[0], "lab. 60 IN SOA ns.lab. hostmaster.lab. "), r.out)
		r = dig(t, addr, "lab", "NS")
		assert.Equal(t, []string{"lab. 60 IN NS ns.lab."}, r.answer, r.out)
		assert.Equal(t, []string{"ns.lab. 60 IN A 172.22.10.2"}, r.additional, "glue: %s", r.out)
		r = dig(t, addr, "10.22.172.in-addr.arpa", "SOA")
		require.Len(t, r.answer, 1, r.out)
		assert.True(t, strings.HasPrefix(r.answer[0], "10.22.172.in-addr.arpa. 60 IN SOA ns.lab. "), r.out)
	})
	t.Run("TCP", func(t *testing.T) {
		r := dig(t, addr, "+tcp", "smpc.lab", "A")
		require.True(t, r.tcp, "dig used TCP: %s", r.out)
		require.Equal(t, "NOERROR", r.status, r.out)
		assert.Equal(t, []string{"smpc.lab. 60 IN A 172.22.10.54"}, r.answer, r.out)
		r = dig(t, addr, "+tcp", "-x", "172.22.10.54")
		assert.Equal(t, []string{"54.10.22.172.in-addr.arpa. 60 IN PTR smpc.lab."}, r.answer, r.out)
	})
	t.Run("EDNS0", func(t *testing.T) {
		r := dig(t, addr, "mp.lab")
		assert.Contains(t, r.edns, "version: 0", r.out)
		assert.Contains(t, r.edns, "udp: 1232", r.out)
		r = dig(t, addr, "+noedns", "mp.lab")
		require.Equal(t, "NOERROR", r.status, r.out)
		assert.Empty(t, r.edns, "no OPT in the answer to a query without: %s", r.out)
		r = dig(t, addr, "+edns=1", "+noednsnegotiation", "mp.lab")
		assert.Equal(t, "BADVERS", r.status, r.out)
	})
	t.Run("out of zone without upstream is REFUSED", func(t *testing.T) {
		r := dig(t, addr, "example.com", "A")
		assert.Equal(t, "REFUSED", r.status, r.out)
		r = dig(t, addr, "-x", "192.0.2.1")
		assert.Equal(t, "REFUSED", r.status, r.out)
	})
	t.Run("zone transfer is REFUSED", func(t *testing.T) {
		r := dig(t, addr, "+tcp", "lab", "AXFR")
		assert.Contains(t, r.out, "Transfer failed", r.out)
	})
	st := s.Stats()
	assert.Positive(t, st.Queries)
	assert.Positive(t, st.Answered)
	assert.Positive(t, st.Refused)
	assert.Zero(t, st.Malformed)
}

func TestDigLeaseAppearsAndExpires(t *testing.T) {
	needDig(t)
	clock := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	leases := &Table{now: clock.Now}
	s := demoServer(Multi(demoLab(), leases))
	addr := start(t, s)

	r := dig(t, addr, "worker1.lab")
	require.Equal(t, "NXDOMAIN", r.status, "before the lease: %s", r.out)

	ip := netip.MustParseAddr("172.22.10.101")
	leases.SetExpiring("Worker1.lab", ip, clock.Now().Add(time.Hour))
	r = dig(t, addr, "worker1.lab")
	require.Equal(t, "NOERROR", r.status, r.out)
	assert.Equal(t, []string{"worker1.lab. 60 IN A 172.22.10.101"}, r.answer, r.out)
	r = dig(t, addr, "-x", ip.String())
	assert.Equal(t, []string{"101.10.22.172.in-addr.arpa. 60 IN PTR worker1.lab."}, r.answer, r.out)

	clock.Advance(time.Hour) // the lease ends without any call
	r = dig(t, addr, "worker1.lab")
	assert.Equal(t, "NXDOMAIN", r.status, "after expiry: %s", r.out)
	r = dig(t, addr, "-x", ip.String())
	assert.Equal(t, "NXDOMAIN", r.status, "after expiry: %s", r.out)

	// renewed, then released explicitly
	leases.SetExpiring("worker1.lab", ip, clock.Now().Add(time.Hour))
	require.Equal(t, "NOERROR", dig(t, addr, "worker1.lab").status)
	leases.Remove("worker1.lab", ip)
	assert.Equal(t, "NXDOMAIN", dig(t, addr, "worker1.lab").status)
	assert.Equal(t, []string{"mp.lab. 60 IN A 172.22.10.50"}, dig(t, addr, "mp.lab").answer)
}

func TestDigTruncationAndTCPRetry(t *testing.T) {
	needDig(t)
	tab := demoLab()
	var many []netip.Addr
	for i := range 60 {
		many = append(many, netip.AddrFrom4([4]byte{172, 22, 10, byte(100 + i)}))
	}
	tab.Set("big.lab", many...)
	addr := start(t, demoServer(tab))

	r := dig(t, addr, "+noedns", "+ignore", "big.lab")
	assert.True(t, r.hasFlag("tc"), "512-byte limit without EDNS0 sets TC: %s", r.out)
	assert.Less(t, len(r.answer), 60, r.out)

	r = dig(t, addr, "+noedns", "big.lab") // dig retries over TCP by itself
	require.Equal(t, "NOERROR", r.status, r.out)
	assert.Len(t, r.answer, 60, r.out)
	assert.True(t, r.tcp, r.out)

	r = dig(t, addr, "+bufsize=4096", "big.lab") // server caps at 1232: 60 A fit
	assert.Len(t, r.answer, 60, r.out)
	assert.False(t, r.hasFlag("tc"), r.out)
}

func TestDigDeniedClient(t *testing.T) {
	needDig(t)
	s := demoServer(demoLab())
	s.Allow = []netip.Prefix{netip.MustParsePrefix("172.22.10.0/24")} // not loopback
	addr := start(t, s)
	r := dig(t, addr, "mp.lab")
	assert.Empty(t, r.status, "no answer to a client outside Allow: %s", r.out)
	r = dig(t, addr, "+tcp", "mp.lab")
	assert.Empty(t, r.status, r.out)
	assert.EqualValues(t, 2, s.Stats().Denied, fmt.Sprint(s.Stats()))
	assert.Zero(t, s.Stats().Queries)
}
