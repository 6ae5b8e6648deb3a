package dhcpsrv

import (
	"context"
	"net/netip"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Reservation is a fixed address (and host name) for one MAC.
type Reservation struct {
	// IP is the reserved address. The server uses a reservation only in
	// the subnet that contains IP.
	IP netip.Addr
	// Hostname is sent in option 12 and stored in the lease ("": the
	// client's own option 12, if valid).
	Hostname string
}

// ReservationSource looks reservations up by MAC: an inventory, a
// database, a fixed map ([StaticReservations]), a function
// ([ReservationFunc]). It is called once per DISCOVER and REQUEST, with
// the packet's context, so a networked source can honour its deadline.
// It must be safe for concurrent use.
//
// Reservation returns the reservation of mac and true, or false when mac
// has none. An error means "cannot tell": the server drops that packet
// without an answer and counts it (Stats.ReservationErrors), because a
// dynamic address handed to a machine that has a reservation would be
// wrong for as long as the lease lasts. The client retries.
//
// Reserved addresses should lie outside the dynamic ranges; if the source
// also implements [ReservedIPs], the server never gives a reserved address
// in a range to another MAC.
type ReservationSource interface {
	Reservation(ctx context.Context, mac hwaddr.MAC) (Reservation, bool, error)
}

// ReservationFunc adapts a function to [ReservationSource], as
// http.HandlerFunc adapts one to http.Handler.
type ReservationFunc func(ctx context.Context, mac hwaddr.MAC) (Reservation, bool, error)

// Reservation calls f(ctx, mac).
func (f ReservationFunc) Reservation(ctx context.Context, mac hwaddr.MAC) (Reservation, bool, error) {
	return f(ctx, mac)
}

// ReservedIPs is optionally implemented by a ReservationSource to say which
// MAC an address is reserved for. The server asks it for each pool address
// it considers giving to a client (with the packet's context); an error
// drops the packet like an error from Reservation.
type ReservedIPs interface {
	ReservedFor(ctx context.Context, ip netip.Addr) (hwaddr.MAC, bool, error)
}

// StaticReservations is a fixed ReservationSource (it also implements
// ReservedIPs). [Server.Validate] checks its entries: each IP must be an
// IPv4 address inside one of the server's subnets. A host name that fails
// ValidHostname is left out of the lease and logged, as from any source.
type StaticReservations map[hwaddr.MAC]Reservation

// Reservation implements ReservationSource; it never fails.
func (r StaticReservations) Reservation(_ context.Context, mac hwaddr.MAC) (Reservation, bool, error) {
	v, ok := r[mac]
	return v, ok, nil
}

// ReservedFor implements ReservedIPs; it never fails.
func (r StaticReservations) ReservedFor(_ context.Context, ip netip.Addr) (hwaddr.MAC, bool, error) {
	for mac, v := range r {
		if v.IP == ip {
			return mac, true, nil
		}
	}
	return hwaddr.MAC{}, false, nil
}
