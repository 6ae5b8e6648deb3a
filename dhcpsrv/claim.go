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
// pool reclaims an address offered to another client only once that
// client's claim has expired.
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

// freeAndClaimed is freeFor followed, for a free address, by a claim.
func (s *Server) freeAndClaimed(ctx context.Context, ip netip.Addr, mac hwaddr.MAC, now time.Time) (bool, error) {
	free, err := s.freeFor(ctx, ip, mac, now)
	if err != nil || !free {
		return false, err
	}
	return s.claim(ctx, ip, mac)
}
