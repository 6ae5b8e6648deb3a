package dhcpsrv

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Sentinel errors returned (wrapped) by lease stores and the server.
var (
	// ErrConflict is returned by [LeaseStore.CompareAndSwap] and
	// [LeaseStore.CompareAndDelete] when the stored revision is not the
	// expected one: another writer changed the address first.
	ErrConflict = errors.New("dhcpsrv: lease changed concurrently")
	// ErrNotFound is returned by lease lookups that find nothing.
	ErrNotFound = errors.New("dhcpsrv: no lease")
	// ErrClosed is returned by a closed lease store.
	ErrClosed = errors.New("dhcpsrv: lease store closed")
	// ErrCorrupt is wrapped by the [*JournalError] OpenJournal returns
	// for a damaged journal: any record that does not check, anywhere but
	// a torn last line (which is dropped).
	ErrCorrupt = errors.New("dhcpsrv: corrupt lease journal")
)

// LeaseState says what a stored address record means.
type LeaseState uint8

// Lease states.
const (
	// StateBound: the address is leased to MAC until Expires.
	StateBound LeaseState = iota
	// StateReleased: the client gave the address back; it is free for any
	// client but remembered so the same MAC gets it again.
	StateReleased
	// StateDeclined: a client reported the address in use (DHCPDECLINE);
	// nobody gets it until Expires (quarantine).
	StateDeclined
)

// String returns "bound", "released" or "declined".
func (s LeaseState) String() string {
	switch s {
	case StateBound:
		return "bound"
	case StateReleased:
		return "released"
	case StateDeclined:
		return "declined"
	}
	return "unknown"
}

// Lease is one address record: who holds (or last held) an IP and until when.
type Lease struct {
	// IP is the leased address; a store holds at most one record per IP.
	IP netip.Addr `json:"ip"`
	// MAC is the client hardware address (zero for a declined address).
	MAC hwaddr.MAC `json:"mac"`
	// Hostname is the reservation's host name, else the client's option 12.
	Hostname string `json:"hostname,omitempty"`
	// UUID is the client machine identifier from option 97 (PXE): the
	// SMBIOS system UUID as dmidecode prints it, else hex.
	UUID string `json:"uuid,omitempty"`
	// Arch is the client architecture from option 93 (or option 60). A
	// request that names none (the booted system's DHCP client) keeps
	// the architecture of the MAC's previous lease: it is the machine's.
	Arch Arch `json:"arch"`
	// Expires is when the lease (or a decline quarantine) ends.
	Expires time.Time `json:"expires"`
	// State says whether the address is bound, released or declined.
	State LeaseState `json:"state"`
	// Rev is the store revision of this record, assigned by the store on
	// every successful write; 0 means "not stored".
	Rev uint64 `json:"rev"`
}

// Active reports whether the lease binds its address at time now.
func (l Lease) Active(now time.Time) bool {
	return l.State == StateBound && now.Before(l.Expires)
}

// blocks reports whether the record keeps the address from client mac.
func (l Lease) blocks(mac hwaddr.MAC, now time.Time) bool {
	switch {
	case l.Rev == 0:
		return false
	case l.State == StateDeclined:
		return now.Before(l.Expires)
	case l.MAC == mac:
		return false
	default:
		return l.Active(now)
	}
}

// LeaseStore persists address records: the four operations the [Server]
// uses, nothing more. Implementations must be safe for concurrent use.
// Writes are compare-and-swap on a per-address revision, so a store shared
// by several servers (etcd, a SQL row version …) can implement it without
// "check, then write" races: the server never hands out an address whose
// write did not succeed.
//
// Every method takes the context of the packet being answered (the
// context given to [Server.Serve], or to [Server.Reply]), so a networked
// store can honour its deadline and cancellation. An error other than
// [ErrNotFound] or [ErrConflict] makes the server drop the packet without
// an answer and count it (Stats.StoreErrors): it never guesses that an
// address is free, and never ACKs a lease that is not stored. Listing
// and closing are the concrete store's business ([Journal.Leases],
// [Journal.Close]).
type LeaseStore interface {
	// Get returns the record for ip, or an error wrapping ErrNotFound.
	Get(ctx context.Context, ip netip.Addr) (Lease, error)
	// ByMAC returns the newest record (highest Rev) of mac, or an error
	// wrapping ErrNotFound.
	ByMAC(ctx context.Context, mac hwaddr.MAC) (Lease, error)
	// CompareAndSwap writes l as the record for l.IP if the record stored
	// there now has revision prevRev (0: no record may exist). It returns
	// the stored lease with its new Rev, or an error wrapping ErrConflict.
	// When it returns nil the write is durable.
	CompareAndSwap(ctx context.Context, prevRev uint64, l Lease) (Lease, error)
	// CompareAndDelete removes the record for ip if its revision is rev,
	// else returns an error wrapping ErrConflict.
	CompareAndDelete(ctx context.Context, ip netip.Addr, rev uint64) error
}
