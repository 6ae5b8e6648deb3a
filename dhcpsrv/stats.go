package dhcpsrv

import "sync/atomic"

// Stats are the server's counters since it was created, as returned by
// Server.Stats. Malformed, SendErrors and the <Seam>Errors counters mean
// the same in dhcpsrv, tftpsrv and dnssrv (see the server contract in the
// documentation of package github.com/metalboot/metalboot).
type Stats struct {
	PacketsIn     uint64 // datagrams read
	PacketsOut    uint64 // replies sent
	Malformed     uint64 // undecodable or non-Ethernet BOOTREQUEST packets dropped
	Dropped       uint64 // valid packets not answered (unknown type, no subnet, non-PXE in proxy mode …)
	SendErrors    uint64 // replies that could not be sent
	Discovers     uint64
	Offers        uint64
	Requests      uint64
	Acks          uint64
	Naks          uint64
	Releases      uint64
	Declines      uint64
	Informs       uint64
	PoolExhausted uint64 // DISCOVERs left unanswered because no address was free
	// StoreErrors counts packets dropped because the LeaseStore failed
	// (an error other than ErrNotFound or ErrConflict): no ACK without a
	// stored lease, no offer from a pool the server cannot read, a
	// RELEASE or DECLINE not recorded.
	StoreErrors uint64
	// ReservationErrors counts packets dropped because the
	// ReservationSource (or its ReservedIPs) failed: a machine that may
	// have a reservation never gets a dynamic address instead.
	ReservationErrors uint64
	// BadHostname counts host names left out because they failed
	// ValidHostname: option 12 of a DISCOVER or REQUEST (the lease is
	// granted without it), a record of the lease journal replayed at
	// start, or a lease read from the store by Server.Lease.
	BadHostname uint64
	// BadUUID counts UUIDs left out of stored leases (journal replay,
	// Server.Lease) because they failed ValidUUID. Option 97 from the
	// wire is always stored in a valid form.
	BadUUID uint64
	// OffersReclaimed counts addresses taken back from a client that was
	// offered them and had not requested them, because the pool had no
	// other free address.
	OffersReclaimed uint64
	// ClaimConflicts counts addresses skipped for an OFFER because a
	// shared store ([OfferClaimer]) said another client's claim holds
	// them (another server offered them first).
	ClaimConflicts uint64
}

type counters struct {
	packetsIn, packetsOut, malformed, dropped, sendErrors       atomic.Uint64
	discovers, offers, requests, acks, naks, releases, declines atomic.Uint64
	informs, exhausted, storeErrors, reservationErrors          atomic.Uint64
	badHostname, badUUID, offersReclaimed, claimConflicts       atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.init()
	c := &s.stats
	return Stats{
		PacketsIn: c.packetsIn.Load(), PacketsOut: c.packetsOut.Load(), Malformed: c.malformed.Load(),
		Dropped: c.dropped.Load(), SendErrors: c.sendErrors.Load(), Discovers: c.discovers.Load(),
		Offers: c.offers.Load(), Requests: c.requests.Load(), Acks: c.acks.Load(), Naks: c.naks.Load(),
		Releases: c.releases.Load(), Declines: c.declines.Load(), Informs: c.informs.Load(),
		PoolExhausted: c.exhausted.Load(), StoreErrors: c.storeErrors.Load(), ReservationErrors: c.reservationErrors.Load(),
		BadHostname: c.badHostname.Load(), BadUUID: c.badUUID.Load(), OffersReclaimed: c.offersReclaimed.Load(),
		ClaimConflicts: c.claimConflicts.Load(),
	}
}
