// Package dnssrv is the lab's DNS server: authoritative for the lab's zones
// (names of machines from the inventory, of DHCP clients while they hold a
// lease, and static records), a caching forwarder for everything else.
//
// Records come from a RecordSource, whose lookups take the serving
// context and may fail (a failure is SERVFAIL, never NXDOMAIN). Table is
// the mutable one, for static records from configuration; Swap replaces a
// whole source at once (an inventory reloaded); LeaseNames keeps the names
// of DHCP clients while their leases last (Bind from the DHCP server's
// OnLease, Unbind from OnRelease: one line each, without this package
// knowing about DHCP). First combines them by precedence (the first source
// that knows a name answers, so a DHCP client naming itself "deploy"
// cannot take over deploy.lab), Multi as a union:
//
//	var inventory dnssrv.Swap // inventory.Store(table) on every reload
//	leases := &dnssrv.LeaseNames{Zone: "lab."}
//	srv := &dnssrv.Server{
//		Addr:       "10.99.0.1:53",
//		Zones:      []string{"lab."},
//		ReverseFor: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")},
//		Records:    dnssrv.First(static, &inventory, leases),
//		Upstreams:  []string{"192.0.2.53"},
//	}
//	pc, l, err := srv.Listen(ctx) // configuration and bind errors, synchronously
//	go srv.Serve(ctx, pc, l)      // or: err = srv.ListenAndServe(ctx)
//	// with dhcpsrv: OnLease: func(l dhcpsrv.Lease) { leases.Bind(l.Hostname, l.IP, l.Expires) }
//
// RecordFuncs adapts plain functions (an inventory's lookups) to a
// RecordSource.
//
// The Server follows the contract shared with dhcpsrv and tftpsrv, written
// down once in the documentation of package [github.com/metalboot/metalboot]
// ("One server contract"): the address is a field (Addr, [DefaultAddr]),
// [Server.Validate] reports every configuration mistake before anything
// binds, [Server.Listen] binds UDP and TCP, [Server.Serve] serves sockets
// it never closes, [Server.ListenAndServe] is both and closes what it
// opened, every DefaultX constant is what the zero value of field X does
// ([DefaultAllow] for Allow), a nil Logger discards, and [Server.Stats]
// uses the shared counter names (Malformed, SendErrors, RecordErrors).
//
// Behaviour:
//
//   - Names in Zones are answered from Records only: A and AAAA for a name
//     with addresses, NODATA (NOERROR, no answer, the zone's SOA in the
//     authority section) for a type the name has not, NXDOMAIN for a name
//     with no address at all. The zone apex has SOA and NS records.
//   - The reverse zones of ReverseFor (172.22.10.0/24 →
//     10.22.172.in-addr.arpa.) answer PTR from RecordSource.LookupAddr, with
//     NXDOMAIN for unknown addresses. PTR for other addresses is answered when
//     Records knows them and forwarded otherwise.
//   - Everything else goes to Upstreams over UDP, retried over TCP when the
//     answer is truncated, the next upstream tried on error, SERVFAIL or
//     REFUSED; answers are cached (an LRU of CacheSize entries, TTLs counted
//     down, negative answers cached for the SOA's negative TTL up to five
//     minutes). Without Upstreams such queries are REFUSED. A reply is
//     used only if its ID, QR bit, opcode and question match the query, its
//     rcode needs no OPT record, and it packs again into a message that
//     parses; any other reply counts as that upstream failing (SERVFAIL
//     when no upstream is left). The answer always carries the client's ID
//     and question (FuzzUpstreamReply).
//   - EDNS0: the OPT record is answered (payload size UDPSize, DO echoed),
//     an unknown EDNS version gets BADVERS, and UDP answers are truncated (TC)
//     to what the client accepts: 512 bytes without EDNS0.
//   - UDP and TCP on the same address. Malformed packets and packets with
//     the QR bit set are dropped without an answer and counted. Clients
//     outside Allow get nothing; UDP answers to one client network are rate
//     limited. See Server about amplification.
//   - TCP connections are closed after TCPIdleTimeout (default 5 s) with no
//     query in flight, and a query must arrive whole within it. At
//     MaxTCPConns (256) connections, or MaxTCPConnsPerClient (32) from one
//     address, a new connection is not refused: the connection idle for
//     longest (of that client, or of all) is closed to make room. So idle
//     connections, even 300 from one allowed client, cannot lock others
//     out of DNS over TCP; only when every connection has a query in flight
//     is a new one closed.
//
// Server is also a dns.Handler, so it can be mounted in a
// github.com/miekg/dns server; ListenAndServe and Serve read the sockets
// themselves (one reader per CPU, no goroutine per query unless the query
// goes upstream).
//
// # Performance
//
// internal/bench/dns.sh runs dnsperf against this package (through
// dnssrv/internal/dnsbench) and against dnsmasq serving the same names from a
// hosts file, in the same run, and prints queries per second and the ratio.
// The query mix is A of known names, AAAA of the same A-only names (NODATA),
// PTR of their addresses and A of unknown names (NXDOMAIN); the script
// checks first that both servers give the same answers.
//
// Measured 2026-11-25 on the 2-CPU development VM (Go 1.26.8, dnsmasq 2.90,
// dnsperf 2.10.0; 1000 names; dnsperf -c 4 -q 200 on ::1, 2 alternating
// rounds of 10 s each; the VM was shared with other builds and tests, load
// average about 8-9, so single runs vary a lot, dnsmasq's most):
//
//	internal/bench/dns.sh                  metalboot qps     dnsmasq qps      ratio
//	  (GOMAXPROCS=2)                       43690, 36379      23913, 11883     2.24
//	GOMAXPROCS=1 internal/bench/dns.sh     35686, 32290       9952, 27233     1.83
//
// An earlier run of the same command, before two allocation fixes, gave
// 29161 against 13926 (2.09). Each run lost only the last 13-14 queries in
// flight, on both servers, and both returned the same rcode mix (75%
// NOERROR, 25% NXDOMAIN). dnsmasq is single-threaded; dnssrv runs one
// reader per CPU, and is still ahead when held to one (GOMAXPROCS=1). A CPU
// profile of dnssrv during a run (PROFILE=file internal/bench/dns.sh) shows
// 58% of its time in the sendto/recvfrom system calls and the process using
// about a sixth of the CPU time available: dnsperf, not dnssrv, is the limit
// on this machine. BenchmarkHandlePacket measures the per-query work alone:
// 9 allocations for an A query.
package dnssrv
