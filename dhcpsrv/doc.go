// Package dhcpsrv is a DHCPv4 server for network boot (stages 1–2 of the
// metalboot boot flow): it leases addresses from pools and reservations,
// tells each client the boot file and next server for its architecture,
// keeps leases in a crash-safe journal, serves relayed requests (giaddr)
// from several subnets, and can run as a proxyDHCP server beside an
// existing DHCP server.
//
// # Serving
//
// A [Server] is configured through its exported fields and follows the
// contract shared with tftpsrv and dnssrv, written down once in the
// documentation of package [github.com/metalboot/metalboot] ("One server
// contract"). Here the address is Interface: [Server.Listen] opens UDP
// port 67 (plus 4011 in proxyDHCP mode) bound to it with SO_BINDTODEVICE
// and returns bind errors at once, [Server.Serve] serves those sockets
// (or ones made by [ListenUDP]) and never closes them,
// [Server.ListenAndServe] does both and closes what it opened; all return
// nil when the context ends. [Server.Validate] reports every
// configuration mistake (a range outside its subnet, overlapping
// subnets, a non-IPv4 address …) before anything binds, and all three
// call it first. [Server.Reply] runs the same logic on one decoded packet
// without a socket (tests, embedding), in the coredhcp style.
//
// The seams a networked backend can implement, [LeaseStore] and
// [ReservationSource] (adapter [ReservationFunc]), get the context of the
// packet being answered. When one fails the packet is dropped and counted
// (Stats.StoreErrors, Stats.ReservationErrors): no ACK without a stored
// lease, and never a dynamic address for a machine whose reservation
// could not be read.
//
// Messages: DISCOVER → OFFER (the address is held for the client for
// OfferTime), REQUEST → ACK or NAK (selecting, init-reboot, renewing and
// rebinding), RELEASE (address freed but remembered for the same client),
// DECLINE (address quarantined for DeclineTime), INFORM → ACK without a
// lease. A REQUEST naming another server's identifier withdraws our offer.
// Replies go to giaddr:67 for relayed requests, to ciaddr:68 for clients
// that have an address, and are broadcast otherwise.
//
// Address choice, in order: the client's reservation ([ReservationSource]),
// its previous address (also after a restart or expiry, while nobody else
// took it), the address already offered, the requested address (option 50),
// then the next free pool address. A pool address is free when no active
// lease of another client, no decline quarantine, no pending offer to
// another client and no reservation ([ReservedIPs]) holds it. Offers are
// held briefly ([DefaultOfferTime], 10 s) and softly: when no address is
// free, the oldest address that is only offered to another client (never
// ACKed) is reclaimed (Stats.OffersReclaimed), so clients that DISCOVER
// and never REQUEST cannot starve a pool. With a pool exhausted by
// leases a DISCOVER gets no answer (counted in Stats.PoolExhausted) and a
// REQUEST for a taken address a NAK; expired leases are reused, ACKed
// ones are never taken before they expire.
//
// # Untrusted input
//
// Everything from the network is checked for what it claims to be before
// it is stored or echoed: a client's host name (option 12) must pass
// [ValidHostname] (RFC 1123, lowered) or the lease is granted without one
// (Stats.BadHostname, a log line with the value quoted); option 97 is
// stored as a UUID or as hex ([ValidUUID]). Leases read back from a store
// are checked the same way.
//
// # Network boot
//
// [ParseClientInfo] reads option 93 (client architecture; else "Arch:" in
// option 60), option 60 (PXEClient / HTTPClient), option 97 (UUID) and
// iPXE's markers. For a network-booting client the reply carries the boot
// file from the [BootPolicy] in both the file field and option 67, the next
// server in siaddr and option 66, option 60 "PXEClient" echoed with PXE
// option 43 (discovery control 8: boot the file in this packet; without it
// UEFI firmware treats the offer as BINL, asks port 4011 and fails with
// PXE-E16), or "HTTPClient" with a URL for UEFI HTTP boot, and option 97
// echoed; iPXE also gets 175.176=1 (no proxyDHCP wait).
// TestFirmwareAsksForItsBootFile checks this with real firmware: OVMF's own
// PXE and SeaBIOS with the iPXE ROM, under QEMU, each request their GRUB
// image over TFTP. Defaults ([DefaultBootFiles]):
// BIOS → grub/i386-pc/core.0, UEFI x64 (7, 9) → grub/x86_64-efi/core.efi,
// UEFI ARM64 (11) → grub/arm64-efi/core.efi, HTTP boot x64 (16) →
// HTTPBase + /grub/x86_64-efi/core-http.efi (a GRUB image that configures
// its own network, made by grubcfg.MakeHTTPBootImage; labserver's e2e boots
// OVMF through it), HTTP boot ARM64 (19) → HTTPBase +
// /grub/arm64-efi/core-http.efi (the same for ARM64; the e2e test boots
// AAVMF through it). A [Handler] may change every reply.
//
// [BootPolicy.Loader] chooses GRUB or iPXE per client (labserver: the lab's
// boot_loader, overridden by a group's metadata). A client that is to boot
// with iPXE and runs it already (user class "iPXE" or option 175: an iPXE
// option ROM, or the binary it was just handed) gets
// [BootPolicy.IPXEScript], the URL of its script; any other gets the iPXE
// binary for its architecture over TFTP ([DefaultIPXEFiles]:
// ipxe/undionly.kpxe, ipxe/ipxe.efi), which then asks again as iPXE. No
// client is handed the binary it runs, so there is no chainload loop.
// [LoaderShim] puts a UEFI x86-64 client on the Secure Boot chain: it
// gets shim ([DefaultShimFiles]: shimx64.efi at the TFTP root, next to the
// distribution-signed GRUB it loads); BIOS and HTTP-boot clients keep
// their Files entry.
//
// In proxyDHCP mode only PXE/HTTP clients are answered: an OFFER without
// address on port 67 and an ACK on port 4011, both with the boot options,
// as pixiecore and smee do.
//
// # Leases
//
// [LeaseStore] is a compare-and-swap interface on a per-address revision,
// so a shared store (etcd, SQL) can implement it without "check, then
// write" races. A store shared by several servers also implements
// [OfferClaimer]: each address is claimed in the store before its OFFER
// leaves, so active-active servers never offer one address to two
// clients (such servers search the pool from where the client's MAC
// hashes, so all of them offer a client the same address, and reclaim no
// offers); package [github.com/metalboot/metalboot/dhcpsrv/etcdstore] is
// such a store on etcd. [OpenJournal] returns the default store: an in-memory index
// backed by an append-only file of CRC-checked records, written and fsynced
// before the ACK is sent (concurrent ACKs share one fsync), compacted on
// open and when it grows to four times the live records, locked against a
// second process. A kill -9 at any moment loses no ACKed lease (tested
// with perfdhcp load and five kills, see TestKill9KeepsAckedLeases); a torn
// last record is dropped on open. Any other damage stops OpenJournal with
// a [*JournalError] (file, offset, record; wraps [ErrCorrupt]) and leaves
// the file untouched; [MoveAside] is the operator's explicit way to start
// without it.
//
// Hooks (OnDiscover, OnLease, OnRelease) and [Server.Stats] feed timelines
// and metrics (dnssrv.LeaseNames turns OnLease and OnRelease into DNS
// names in one line each); [Server.Lease] looks a machine's current lease
// up by MAC. Malformed packets are dropped and counted, never answered.
// [ParseArch] and [BootFilesByName] read the architecture names a
// configuration file uses ("bios", "efi64", "arm64", "http").
//
// # Performance
//
// internal/bench/dhcp.sh runs Kea's perfdhcp (as a relay agent, fresh MACs
// per load step, 64000-address pool, persistent leases on every server)
// against dhcpsrv, dnsmasq 2.90 (lease file, --quiet-dhcp, logging to a
// file) and kea-dhcp4 2.2.0 (memfile with persist, default single thread)
// in one run, inside throw-away namespaces. Each server is swept over
// increasing offered loads in two interleaved rounds; "sustained" is the
// best achieved DORA/s with at most 1% of REQUESTs unanswered, "peak" the
// best at any load. Two runs on the project's 2-core VM, 2026-11-25, with
// other jobs running (load average 2–4), `sudo internal/bench/dhcp.sh`:
//
//	run (UTC)  server     sustained DORA/s  peak DORA/s
//	15:00      metalboot  2666              3109
//	15:00      dnsmasq     222               222
//	15:00      kea        2666              3331
//	15:03      metalboot  3427              3735
//	15:03      dnsmasq     214               223
//	15:03      kea        1582              2365
//
// metalboot/dnsmasq: 12–16× sustained; metalboot/kea: 1.0–2.2× sustained,
// 0.9–1.6× peak. Numbers swing with the machine's other load; the order
// does not. dhcpsrv fsyncs every ACKed lease (group commit), dnsmasq
// rewrites and fsyncs its whole lease file on every change (its limit
// here), Kea's memfile appends without fsync. Above ~3500 exchanges/s
// perfdhcp itself drops replies on this machine (UdpRcvbufErrors on the
// client side while dhcpsrv had answered every packet), so the metalboot
// figures are lower bounds. In process, BenchmarkDORA costs about 60 µs
// per DISCOVER-OFFER-REQUEST-ACK (in-memory store, packet building
// included).
package dhcpsrv
