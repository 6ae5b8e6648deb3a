package etcdstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/etcdstore"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/etcdtest"
)

// shared is a 3-member cluster for the tests that do not kill members
// (each uses its own key prefix), and for the Example; nil when etcd is
// not installed.
var shared *etcdtest.Cluster

func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m, 3, &shared)) }

func open(t *testing.T, cli *clientv3.Client, prefix string) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(context.Background(), cli, etcdstore.Options{Prefix: prefix, RequestTimeout: 3 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func prefix(t *testing.T) string { return "/test/" + t.Name() + "/" }

var (
	ip1  = netip.MustParseAddr("10.99.0.101")
	macA = hwaddr.MAC{2, 0, 0, 0, 0, 0xa}
	macB = hwaddr.MAC{2, 0, 0, 0, 0, 0xb}
)

// eventually polls cond until it holds (the other store's watch delivered
// a change) or a generous bound passes.

// TestCompareAndSwapAcrossStores: two stores (two servers) on one prefix
// see each other's writes, and a write on a revision the other store
// replaced fails with ErrConflict, however stale the writer's view.
func TestCompareAndSwapAcrossStores(t *testing.T) {
	c := etcdtest.Shared(t, shared)
	ctx := context.Background()
	a := open(t, c.Client(t), prefix(t))
	b := open(t, c.Client(t), prefix(t))

	l, err := a.CompareAndSwap(ctx, 0, dhcpsrv.Lease{IP: ip1, MAC: macA, Hostname: "mp", Expires: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.NotZero(t, l.Rev)

	// A second "create" of the same address loses, on either store.
	_, err = a.CompareAndSwap(ctx, 0, dhcpsrv.Lease{IP: ip1, MAC: macB, Expires: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, dhcpsrv.ErrConflict)
	_, err = b.CompareAndSwap(ctx, 0, dhcpsrv.Lease{IP: ip1, MAC: macB, Expires: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, dhcpsrv.ErrConflict)

	// b sees a's record through its watch (or the conflict's read).
	etcdtest.Eventually(t, "a's lease in b", func() bool {
		g, err := b.Get(ctx, ip1)
		return err == nil && g.MAC == macA && g.Rev == l.Rev && g.Hostname == "mp"
	})
	g, err := b.ByMAC(ctx, macA)
	require.NoError(t, err)
	require.Equal(t, ip1, g.IP)

	// b renews on the current revision; a's write on the old one fails.
	l2, err := b.CompareAndSwap(ctx, l.Rev, dhcpsrv.Lease{IP: ip1, MAC: macA, Expires: time.Now().Add(2 * time.Hour)})
	require.NoError(t, err)
	require.Greater(t, l2.Rev, l.Rev)
	_, err = a.CompareAndSwap(ctx, l.Rev, dhcpsrv.Lease{IP: ip1, MAC: macB, Expires: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, dhcpsrv.ErrConflict)
	require.ErrorIs(t, a.CompareAndDelete(ctx, ip1, l.Rev), dhcpsrv.ErrConflict)

	// The failed write brought the current record into a's mirror.
	g, err = a.Get(ctx, ip1)
	require.NoError(t, err)
	require.Equal(t, l2.Rev, g.Rev)
	require.NoError(t, a.CompareAndDelete(ctx, ip1, l2.Rev))
	etcdtest.Eventually(t, "the delete in b", func() bool {
		_, err := b.Get(ctx, ip1)
		return errors.Is(err, dhcpsrv.ErrNotFound)
	})
	_, err = b.ByMAC(ctx, macA)
	require.ErrorIs(t, err, dhcpsrv.ErrNotFound)
	require.NoError(t, a.Err())
	require.NoError(t, b.Err())
}

// TestClaims: an address claimed for one client cannot be claimed or
// bound for another, from any store, until the claim expires by itself.
func TestClaims(t *testing.T) {
	c := etcdtest.Shared(t, shared)
	ctx := context.Background()
	a := open(t, c.Client(t), prefix(t))
	b := open(t, c.Client(t), prefix(t))

	require.NoError(t, a.ClaimOffer(ctx, ip1, macA, time.Second))
	// b has perhaps not seen the claim yet: etcd's comparison refuses.
	require.ErrorIs(t, b.ClaimOffer(ctx, ip1, macB, time.Second), dhcpsrv.ErrConflict)
	_, err := b.CompareAndSwap(ctx, 0, dhcpsrv.Lease{IP: ip1, MAC: macB, Expires: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, dhcpsrv.ErrConflict)
	got, ok := b.Claimed(ctx, macA)
	require.True(t, ok)
	require.Equal(t, ip1, got)
	// The claim's own client may renew it and be bound, from either store.
	require.NoError(t, b.ClaimOffer(ctx, ip1, macA, time.Second))

	// The claim expires (etcd lease of about 2 s): then b may claim it.
	etcdtest.Eventually(t, "the claim expired", func() bool {
		_, ok := b.Claimed(ctx, macA)
		return !ok
	})
	require.NoError(t, b.ClaimOffer(ctx, ip1, macB, time.Second))
	l, err := a.CompareAndSwap(ctx, 0, dhcpsrv.Lease{IP: ip1, MAC: macB, Expires: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	// A claim on a lease record the claimer has not seen fails: b claims
	// on its mirror's revision, which compares with etcd's.
	etcdtest.Eventually(t, "lease in b", func() bool { _, err := b.Get(ctx, ip1); return err == nil })
	_, err = a.CompareAndSwap(ctx, l.Rev, dhcpsrv.Lease{IP: ip1, MAC: macB, State: dhcpsrv.StateReleased, Expires: time.Now()})
	require.NoError(t, err)
	// b's mirror may still hold l.Rev; then its claim fails and refreshes.
	for range 2 {
		if err = b.ClaimOffer(ctx, ip1, macB, time.Second); err == nil {
			break
		}
		require.ErrorIs(t, err, dhcpsrv.ErrConflict)
	}
	require.NoError(t, err)
}

// pool is the subnet every racing server serves.
func newServers(t *testing.T, stores []*etcdstore.Store, from, to string, offer time.Duration) []*dhcpsrv.Server {
	var out []*dhcpsrv.Server
	for i, st := range stores {
		out = append(out, &dhcpsrv.Server{
			ServerIP: netip.AddrFrom4([4]byte{10, 99, 0, byte(1 + i)}),
			Subnets: []dhcpsrv.Subnet{{
				Prefix:    netip.MustParsePrefix("10.99.0.0/24"),
				Ranges:    []dhcpsrv.Range{{From: netip.MustParseAddr(from), To: netip.MustParseAddr(to)}},
				LeaseTime: time.Hour,
			}},
			Leases:    st,
			OfferTime: offer,
		})
	}
	return out
}

// ledger records what the servers said on the "wire".
type ledger struct {
	mu     sync.Mutex
	offers map[netip.Addr][]offerRec
	acks   map[netip.Addr]map[hwaddr.MAC]bool
	byMAC  map[hwaddr.MAC]netip.Addr
}

type offerRec struct {
	mac hwaddr.MAC
	at  time.Time
}

func newLedger() *ledger {
	return &ledger{offers: map[netip.Addr][]offerRec{}, acks: map[netip.Addr]map[hwaddr.MAC]bool{}, byMAC: map[hwaddr.MAC]netip.Addr{}}
}

// dora runs one client's DISCOVER to every server (a broadcast), picks a
// random offer, REQUESTs it from every server with that server's
// identifier, and records offers and the ACK. It reports the address
// ACKed (invalid: none this round).
func (lg *ledger) dora(ctx context.Context, servers []*dhcpsrv.Server, mac hwaddr.MAC, rnd *rand.Rand) netip.Addr {
	d, _ := dhcpv4.NewDiscovery(mac.HardwareAddr())
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		offers []*dhcpv4.DHCPv4
	)
	for _, s := range servers {
		wg.Go(func() {
			if o := s.Reply(ctx, d); o != nil && o.MessageType() == dhcpv4.MessageTypeOffer {
				ip, _ := netip.AddrFromSlice(o.YourIPAddr.To4())
				lg.mu.Lock()
				lg.offers[ip] = append(lg.offers[ip], offerRec{mac, time.Now()})
				lg.mu.Unlock()
				mu.Lock()
				offers = append(offers, o)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(offers) == 0 {
		return netip.Addr{}
	}
	chosen := offers[rnd.IntN(len(offers))]
	req, _ := dhcpv4.NewRequestFromOffer(chosen)
	var acked netip.Addr
	for _, s := range servers {
		wg.Go(func() {
			a := s.Reply(ctx, req)
			if a == nil || a.MessageType() != dhcpv4.MessageTypeAck {
				return
			}
			ip, _ := netip.AddrFromSlice(a.YourIPAddr.To4())
			lg.mu.Lock()
			if lg.acks[ip] == nil {
				lg.acks[ip] = map[hwaddr.MAC]bool{}
			}
			lg.acks[ip][mac] = true
			lg.byMAC[mac] = ip
			lg.mu.Unlock()
			mu.Lock()
			acked = ip
			mu.Unlock()
		})
	}
	wg.Wait()
	return acked
}

// check asserts the invariants: no address ACKed to two clients, no
// address offered to two clients within the offer hold time, and every
// ACKed lease stored in etcd for its client.
func (lg *ledger) check(t *testing.T, cli *clientv3.Client, prefix string, hold time.Duration) (acked int) {
	t.Helper()
	lg.mu.Lock()
	defer lg.mu.Unlock()
	for ip, macs := range lg.acks {
		assert.Len(t, macs, 1, "address %v ACKed to %v", ip, macs)
	}
	for ip, recs := range lg.offers {
		for i, a := range recs {
			for _, b := range recs[i+1:] {
				if a.mac != b.mac && a.at.Sub(b.at).Abs() < hold {
					t.Errorf("address %v offered to %v and %v %v apart (hold %v)", ip, a.mac, b.mac, a.at.Sub(b.at).Abs(), hold)
				}
			}
		}
	}
	resp, err := cli.Get(context.Background(), prefix+"dhcp/lease/", clientv3.WithPrefix())
	require.NoError(t, err)
	stored := map[netip.Addr]dhcpsrv.Lease{}
	for _, kv := range resp.Kvs {
		ip := netip.MustParseAddr(strings.TrimPrefix(string(kv.Key), prefix+"dhcp/lease/"))
		var l dhcpsrv.Lease
		require.NoError(t, jsonUnmarshal(kv.Value, &l))
		stored[ip] = l
	}
	for mac, ip := range lg.byMAC {
		l, ok := stored[ip]
		if assert.True(t, ok, "ACKed lease %v of %v not in etcd", ip, mac) {
			assert.Equal(t, mac, l.MAC, "ACKed lease %v: etcd holds it for another client", ip)
			assert.Equal(t, dhcpsrv.StateBound, l.State)
		}
	}
	return len(lg.byMAC)
}

// TestServersRaceForOnePool: four dhcpsrv servers, each on its own etcd
// client and store, answer 96 clients at once from a 64-address pool;
// every client broadcasts its DISCOVER and REQUEST to all four. No
// address is offered to two clients within the hold time, none is ACKed
// to two, and every ACK is in etcd.
func TestServersRaceForOnePool(t *testing.T) {
	c := etcdtest.Shared(t, shared)
	ctx := context.Background()
	p := prefix(t)
	var stores []*etcdstore.Store
	for range 4 {
		stores = append(stores, open(t, c.Client(t), p))
	}
	const hold = 30 * time.Second
	servers := newServers(t, stores, "10.99.0.100", "10.99.0.163", hold)
	lg := newLedger()
	var wg sync.WaitGroup
	for i := range 96 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 1))
			mac := hwaddr.MAC{2, 1, 0, 0, 0, byte(i)}
			for range 3 {
				if lg.dora(ctx, servers, mac, rnd).IsValid() {
					return
				}
			}
		})
	}
	wg.Wait()
	acked := lg.check(t, c.Client(t), p, hold)
	var st dhcpsrv.Stats
	for _, s := range servers {
		x := s.Stats()
		st.ClaimConflicts += x.ClaimConflicts
		st.StoreErrors += x.StoreErrors
		st.Acks += x.Acks
		st.Naks += x.Naks
	}
	t.Logf("%d clients ACKed, %d claim conflicts, %d NAKs, %d store errors", acked, st.ClaimConflicts, st.Naks, st.StoreErrors)
	assert.Zero(t, st.StoreErrors)
	// Offers a client did not take hold their address until the claim
	// expires: each of the four servers may have claimed one for a
	// client, so at least a quarter of the pool is ACKed.
	assert.GreaterOrEqual(t, acked, 64/4)
	assert.LessOrEqual(t, acked, 64)
}

// TestServersSurviveMemberKill: two servers keep leasing while one etcd
// member of three is killed with SIGKILL mid-run; afterwards every
// client that was ACKed has its lease in etcd, no address is held by two
// clients, and every client got an address.
func TestServersSurviveMemberKill(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := context.Background()
	p := prefix(t)
	stores := []*etcdstore.Store{open(t, c.Client(t), p), open(t, c.Client(t), p)}
	const hold = 30 * time.Second
	servers := newServers(t, stores, "10.99.0.100", "10.99.0.250", hold)
	lg := newLedger()
	run := func(from, n int) {
		var wg sync.WaitGroup
		for i := from; i < from+n; i++ {
			wg.Go(func() {
				rnd := rand.New(rand.NewPCG(uint64(i), 2))
				mac := hwaddr.MAC{2, 2, 0, 0, 0, byte(i)}
				// A DHCP client retransmits for a minute and more; here for
				// up to 60 s, every 200 ms (under -race on a loaded machine
				// the etcd client's move to another member can take
				// seconds: 20 tries once left one client of 80 without).
				deadline := time.Now().Add(60 * time.Second)
				for time.Now().Before(deadline) {
					if lg.dora(ctx, servers, mac, rnd).IsValid() {
						return
					}
					time.Sleep(200 * time.Millisecond) // the client's retransmission
				}
			})
		}
		wg.Wait()
	}
	run(0, 30)
	done := make(chan struct{})
	go func() { run(30, 30); close(done) }()
	c.Kill(0)
	<-done
	run(60, 20)
	acked := lg.check(t, c.Client(t), p, hold)
	assert.Equal(t, 80, acked, "every client got an address")
	for _, s := range stores {
		// The stores noticed nothing lasting: the client moved to
		// another member.
		etcdtest.Eventually(t, "store healthy", func() bool { return s.Err() == nil })
	}
}

// TestLosingQuorumStopsNewAddresses: with two of three members killed,
// a server hands out no new address (no OFFER, StoreErrors counted) and
// its store reports ErrUnavailable; with them back, it serves again.
func TestLosingQuorumStopsNewAddresses(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := context.Background()
	cli := c.Client(t)
	st, err := etcdstore.Open(ctx, cli, etcdstore.Options{Prefix: prefix(t), RequestTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	defer st.Close()
	srv := newServers(t, []*etcdstore.Store{st}, "10.99.0.100", "10.99.0.120", 10*time.Second)[0]
	lg := newLedger()
	rnd := rand.New(rand.NewPCG(3, 3))
	require.True(t, lg.dora(ctx, []*dhcpsrv.Server{srv}, macA, rnd).IsValid())

	c.Kill(1)
	c.Kill(2)
	d, _ := dhcpv4.NewDiscovery(net.HardwareAddr(macB[:]))
	etcdtest.Eventually(t, "no offer without quorum", func() bool { return srv.Reply(ctx, d) == nil })
	require.NotZero(t, srv.Stats().StoreErrors)
	require.ErrorIs(t, st.Err(), etcdstore.ErrUnavailable)

	c.Restart(1)
	c.Restart(2)
	etcdtest.Eventually(t, "offers again", func() bool { return lg.dora(ctx, []*dhcpsrv.Server{srv}, macB, rnd).IsValid() })
	etcdtest.Eventually(t, "store healthy", func() bool { return st.Err() == nil })
	lg.check(t, cli, prefix(t), 10*time.Second)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
