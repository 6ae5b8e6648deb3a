package dhcpsrv

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// OfferClaimer is an optional interface of a [LeaseStore] shared by
// several servers (active-active): before an OFFER leaves, the server
// claims its address in the store for the client, so two servers never
// offer one address to two clients. A claim expires by itself after
// hold; the lease written when the client REQUESTs the address is what
// binds it. A store that implements OfferClaimer should also refuse (with
// [ErrConflict]) a CompareAndSwap that binds an address to a client while
// another client's claim on it is alive, so an address is never ACKed to
// a client it was not offered to while someone else's offer stands.
//
// Claimed returns the address claimed for mac by any server (false:
// none); the server offers it again before it looks at its pool, so the
// servers that see one DISCOVER tend to offer the same address.
//
// The server calls ClaimOffer for the address it is about to offer, with
// hold = [Server.OfferTime]; claiming an address again for the same client
// renews the claim. [ErrConflict] means another client holds a claim: the
// server tries the next address. Any other error drops the DISCOVER
// (Stats.StoreErrors): a server that cannot reach the shared store hands
// out no new address. The file [Journal] and the memory store do not
// implement it (one server needs no claims). With claims, an exhausted
// pool reclaims no offer (Stats.OffersReclaimed stays 0): an address
// offered to another client is free again once its claim expired.
type OfferClaimer interface {
	ClaimOffer(ctx context.Context, ip netip.Addr, mac hwaddr.MAC, hold time.Duration) error
	Claimed(ctx context.Context, mac hwaddr.MAC) (netip.Addr, bool)
}

// claimedElsewhere is the address a shared store says is claimed for mac.
func (s *Server) claimedElsewhere(ctx context.Context, mac hwaddr.MAC) netip.Addr {
	if c, ok := s.store.(OfferClaimer); ok {
		if ip, ok := c.Claimed(ctx, mac); ok {
			return ip
		}
	}
	return netip.Addr{}
}

// claim claims ip for mac in a shared store before it is offered; it
// reports false when another client's claim holds ip. Stores that are not
// an OfferClaimer hold no claims.
func (s *Server) claim(ctx context.Context, ip netip.Addr, mac hwaddr.MAC) (bool, error) {
	c, ok := s.store.(OfferClaimer)
	if !ok {
		return true, nil
	}
	err := c.ClaimOffer(ctx, ip, mac, s.offerTime())
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrConflict):
		s.stats.claimConflicts.Add(1)
		return false, nil
	default:
		return false, err
	}
}

// maxClaimAttempts bounds the addresses a DISCOVER tries to claim when
// other servers claimed them first.
const maxClaimAttempts = 8

// foreign marks, in the offers map, an address another server claimed:
// no client of this server is offered it until the hold time passes.
var foreign = hwaddr.MAC{}

// claimOffered claims ip, just recorded as offered to mac, in a shared
// store. On a conflict it withdraws the local offer and marks ip as
// another server's for the hold time, so the next pick skips it; on an
// error it withdraws the offer. ok reports whether ip may be offered.
func (s *Server) claimOffered(ctx context.Context, ip netip.Addr, mac hwaddr.MAC, now time.Time) (ok bool, err error) {
	ok, err = s.claim(ctx, ip, mac)
	if ok && err == nil {
		return true, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, had := s.offers[ip]; had && o.mac == mac {
		delete(s.offers, ip)
	}
	if s.offerByMAC[mac] == ip {
		delete(s.offerByMAC, mac)
	}
	if o, had := s.offers[ip]; err == nil && (!had || !now.Before(o.until)) {
		s.offers[ip] = offer{mac: foreign, until: now.Add(s.offerTime())}
	}
	return false, err
}

// macHash is FNV-1a of mac: where a shared pool's search starts for it.
func macHash(mac hwaddr.MAC) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range mac {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return h
}
