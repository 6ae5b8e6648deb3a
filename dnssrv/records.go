package dnssrv

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RecordSource answers the two questions the authoritative part of the
// server asks: which addresses does a name have, and which names does an
// address have. Names are fully qualified and lower case ("mp.lab.").
// Implementations must be safe for concurrent use and should return quickly:
// they are called on the query path, with the context of the Serve call
// (or of the query, when one is known), so a networked source can honour
// its cancellation.
//
// A nil or empty result means "no such record". The server decides between
// NXDOMAIN and NODATA from LookupHost: a name with any address (A or AAAA)
// exists, so a query for the other type is answered NODATA. An error
// means "cannot tell": the server answers SERVFAIL (never NXDOMAIN, which
// clients cache) and counts it in Stats.RecordErrors.
type RecordSource interface {
	// LookupHost returns the addresses (IPv4 and IPv6) of name.
	LookupHost(ctx context.Context, name string) ([]netip.Addr, error)
	// LookupAddr returns the names of addr, for PTR answers.
	LookupAddr(ctx context.Context, addr netip.Addr) ([]string, error)
}

// RecordFuncs adapts two functions to a RecordSource, the way
// http.HandlerFunc adapts one to a Handler; a nil function finds nothing.
//
//	dnssrv.RecordFuncs{Host: inv.AddrsOf, Addr: inv.NamesOf}
type RecordFuncs struct {
	Host func(ctx context.Context, name string) ([]netip.Addr, error)
	Addr func(ctx context.Context, addr netip.Addr) ([]string, error)
}

// LookupHost implements RecordSource.
func (f RecordFuncs) LookupHost(ctx context.Context, name string) ([]netip.Addr, error) {
	if f.Host == nil {
		return nil, nil
	}
	return f.Host(ctx, name)
}

// LookupAddr implements RecordSource.
func (f RecordFuncs) LookupAddr(ctx context.Context, addr netip.Addr) ([]string, error) {
	if f.Addr == nil {
		return nil, nil
	}
	return f.Addr(ctx, addr)
}

// CanonicalName returns name lower-cased and fully qualified, the form
// RecordSource methods receive and Table stores. "MP.lab" becomes "mp.lab.".
func CanonicalName(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" || name[len(name)-1] != '.' {
		name += "."
	}
	return name
}

type tableEntry struct {
	addr    netip.Addr
	expires time.Time // zero: never
}

func (e tableEntry) live(now time.Time) bool {
	return e.expires.IsZero() || now.Before(e.expires)
}

// Table is a concurrency-safe, mutable RecordSource: static records from a
// configuration, or the names of DHCP clients that come and go with their
// leases. The zero value is an empty table ready to use. Names are stored in
// canonical form (see CanonicalName); IPv4-mapped IPv6 addresses are stored as
// IPv4.
//
// Records set with SetExpiring disappear from lookups at their expiry time
// without any further call; they are purged from memory on the next write.
type Table struct {
	mu     sync.RWMutex
	byName map[string][]tableEntry
	byAddr map[netip.Addr][]string
	// nextPurge is the earliest expiry of any stored entry (zero: none), so
	// writes only scan the table when something has actually expired.
	nextPurge time.Time
	now       func() time.Time // tests; nil means time.Now
}

var _ RecordSource = (*Table)(nil)

func (t *Table) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// Set replaces every record of name with addrs, which never expire. Set with
// no addresses deletes name. Invalid addresses are ignored.
func (t *Table) Set(name string, addrs ...netip.Addr) {
	name = CanonicalName(name)
	entries := make([]tableEntry, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			entries = append(entries, tableEntry{addr: a.Unmap()})
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.replaceLocked(name, entries)
}

// SetExpiring replaces every record of name with addr, valid until expires;
// a DHCP server calls it when a client with a hostname gets or renews its
// lease. An expiry in the past deletes name.
func (t *Table) SetExpiring(name string, addr netip.Addr, expires time.Time) {
	name = CanonicalName(name)
	var entries []tableEntry
	if addr.IsValid() && t.clock().Before(expires) {
		entries = []tableEntry{{addr: addr.Unmap(), expires: expires}}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.replaceLocked(name, entries)
}

// Add adds addr to the records of name (keeping the others), valid until
// expires, or forever when expires is zero.
func (t *Table) Add(name string, addr netip.Addr, expires time.Time) {
	if !addr.IsValid() {
		return
	}
	name = CanonicalName(name)
	addr = addr.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	entries := slices.Clone(t.byName[name])
	entries = slices.DeleteFunc(entries, func(e tableEntry) bool { return e.addr == addr })
	entries = append(entries, tableEntry{addr: addr, expires: expires})
	t.replaceLocked(name, entries)
}

// Delete removes every record of name.
func (t *Table) Delete(name string) {
	name = CanonicalName(name)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.replaceLocked(name, nil)
}

// Remove removes the record name → addr only, leaving the name's other
// addresses. Use it when a lease ends: if the name has meanwhile moved to
// another client's address, that newer record stays.
func (t *Table) Remove(name string, addr netip.Addr) {
	name = CanonicalName(name)
	addr = addr.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.byName[name]
	if !slices.ContainsFunc(old, func(e tableEntry) bool { return e.addr == addr }) {
		return
	}
	entries := slices.DeleteFunc(slices.Clone(old), func(e tableEntry) bool { return e.addr == addr })
	t.replaceLocked(name, entries)
}

// Len returns the number of names with at least one live record.
func (t *Table) Len() int {
	now := t.clock()
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, es := range t.byName {
		if slices.ContainsFunc(es, func(e tableEntry) bool { return e.live(now) }) {
			n++
		}
	}
	return n
}

// replaceLocked sets name's entries (nil deletes) and keeps byAddr in step.
// It also purges expired entries of every name, so a table fed by leases does
// not grow without bound. t.mu must be held for writing.
func (t *Table) replaceLocked(name string, entries []tableEntry) {
	if t.byName == nil {
		t.byName = make(map[string][]tableEntry)
		t.byAddr = make(map[netip.Addr][]string)
	}
	for _, e := range t.byName[name] {
		t.unlinkLocked(e.addr, name)
	}
	delete(t.byName, name)
	if len(entries) > 0 {
		t.byName[name] = entries
		for _, e := range entries {
			t.byAddr[e.addr] = append(t.byAddr[e.addr], name)
			if !e.expires.IsZero() && (t.nextPurge.IsZero() || e.expires.Before(t.nextPurge)) {
				t.nextPurge = e.expires
			}
		}
	}
	if !t.nextPurge.IsZero() && !t.clock().Before(t.nextPurge) {
		t.purgeLocked()
	}
}

func (t *Table) unlinkLocked(addr netip.Addr, name string) {
	names := slices.DeleteFunc(slices.Clone(t.byAddr[addr]), func(n string) bool { return n == name })
	if len(names) == 0 {
		delete(t.byAddr, addr)
	} else {
		t.byAddr[addr] = names
	}
}

func (t *Table) purgeLocked() {
	now := t.clock()
	t.nextPurge = time.Time{}
	defer func() {
		for _, es := range t.byName {
			for _, e := range es {
				if !e.expires.IsZero() && (t.nextPurge.IsZero() || e.expires.Before(t.nextPurge)) {
					t.nextPurge = e.expires
				}
			}
		}
	}()
	for name, es := range t.byName {
		if slices.ContainsFunc(es, func(e tableEntry) bool { return !e.live(now) }) {
			for _, e := range es {
				t.unlinkLocked(e.addr, name)
			}
			kept := slices.DeleteFunc(slices.Clone(es), func(e tableEntry) bool { return !e.live(now) })
			if len(kept) == 0 {
				delete(t.byName, name)
				continue
			}
			t.byName[name] = kept
			for _, e := range kept {
				t.byAddr[e.addr] = append(t.byAddr[e.addr], name)
			}
		}
	}
}

// LookupHost implements RecordSource; it never fails.
func (t *Table) LookupHost(_ context.Context, name string) ([]netip.Addr, error) {
	return t.lookupHost(name), nil
}

func (t *Table) lookupHost(name string) []netip.Addr {
	name = CanonicalName(name)
	now := t.clock()
	t.mu.RLock()
	defer t.mu.RUnlock()
	es := t.byName[name]
	if len(es) == 0 {
		return nil
	}
	out := make([]netip.Addr, 0, len(es))
	for _, e := range es {
		if e.live(now) {
			out = append(out, e.addr)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// LookupAddr implements RecordSource; it never fails.
func (t *Table) LookupAddr(_ context.Context, addr netip.Addr) ([]string, error) {
	return t.lookupAddr(addr), nil
}

func (t *Table) lookupAddr(addr netip.Addr) []string {
	addr = addr.Unmap()
	now := t.clock()
	t.mu.RLock()
	defer t.mu.RUnlock()
	names := t.byAddr[addr]
	if len(names) == 0 {
		return nil
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if slices.ContainsFunc(t.byName[n], func(e tableEntry) bool { return e.addr == addr && e.live(now) }) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Multi combines sources into one RecordSource: lookups ask every source in
// order and return the union, without duplicates. Nil sources are skipped.
// An error of any source is the lookup's error: a partial union would be
// a wrong answer.
func Multi(sources ...RecordSource) RecordSource { return multi(nonNil(sources)) }

// nonNil returns sources without its nil entries.
func nonNil(sources []RecordSource) []RecordSource {
	var out []RecordSource
	for _, s := range sources {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

type multi []RecordSource

func (m multi) LookupHost(ctx context.Context, name string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range m {
		as, err := s.LookupHost(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

func (m multi) LookupAddr(ctx context.Context, addr netip.Addr) ([]string, error) {
	var out []string
	for _, s := range m {
		ns, err := s.LookupAddr(ctx, addr)
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// First combines sources by precedence: a lookup returns the answer of the
// first source that has one. Use it so that names a DHCP client picks for
// itself cannot shadow configured ones: with First(static, inventory,
// leases), a client calling itself "deploy" does not add its address to
// deploy.lab. Nil sources are skipped. A source that fails before one has
// answered makes the lookup fail: asking the next one could let exactly
// such a lower-precedence name through.
func First(sources ...RecordSource) RecordSource { return first(nonNil(sources)) }

type first []RecordSource

func (f first) LookupHost(ctx context.Context, name string) ([]netip.Addr, error) {
	for _, s := range f {
		as, err := s.LookupHost(ctx, name)
		if err != nil || len(as) > 0 {
			return as, err
		}
	}
	return nil, nil
}

func (f first) LookupAddr(ctx context.Context, addr netip.Addr) ([]string, error) {
	for _, s := range f {
		ns, err := s.LookupAddr(ctx, addr)
		if err != nil || len(ns) > 0 {
			return ns, err
		}
	}
	return nil, nil
}

// Swap is a RecordSource whose underlying source is replaced whole, at
// once, by Store: a server's inventory or configured records, rebuilt on a
// reload while queries keep being answered from the old one until the new
// one is in place. The zero value (and a Swap holding nil) finds nothing.
// It is safe for concurrent use.
type Swap struct{ p atomic.Pointer[swapped] }

type swapped struct{ src RecordSource }

// Store makes src the source of every lookup from now on (nil: none).
func (s *Swap) Store(src RecordSource) { s.p.Store(&swapped{src}) }

// Load returns the current source (nil when none was stored).
func (s *Swap) Load() RecordSource {
	if w := s.p.Load(); w != nil {
		return w.src
	}
	return nil
}

// LookupHost implements RecordSource with the current source.
func (s *Swap) LookupHost(ctx context.Context, name string) ([]netip.Addr, error) {
	if src := s.Load(); src != nil {
		return src.LookupHost(ctx, name)
	}
	return nil, nil
}

// LookupAddr implements RecordSource with the current source.
func (s *Swap) LookupAddr(ctx context.Context, addr netip.Addr) ([]string, error) {
	if src := s.Load(); src != nil {
		return src.LookupAddr(ctx, addr)
	}
	return nil, nil
}

// LeaseNames keeps the names of DHCP clients in a Table while they hold
// their leases: the records a lab serves from its leases, for any DHCP
// server's hooks without this package knowing about DHCP. With dhcpsrv:
//
//	names := &dnssrv.LeaseNames{Zone: "lab."}
//	dhcp := &dhcpsrv.Server{
//		OnLease:   func(l dhcpsrv.Lease) { names.Bind(l.Hostname, l.IP, l.Expires) },
//		OnRelease: func(l dhcpsrv.Lease) { names.Unbind(l.Hostname, l.IP) },
//		…
//	}
//	dns := &dnssrv.Server{Zones: []string{"lab."}, Records: dnssrv.First(inventory, names), …}
//
// Put it after configured sources in First, so a client calling itself
// "deploy" cannot take over deploy.lab. A LeaseNames is a RecordSource
// (through its Table) and is safe for concurrent use; the zero Zone is
// the root, which QualifyHost then only accepts single labels for.
type LeaseNames struct {
	// Zone is the zone client names are placed in, e.g. "lab.".
	Zone string
	// Table holds the names; records expire with their leases.
	Table
}

// Bind records hostname (a client's option 12 or a reservation's name,
// qualified in Zone by QualifyHost) → addr until expires, replacing the
// name's earlier address. It reports the name, or false (and records
// nothing) for a host name QualifyHost refuses: a client cannot place
// names outside Zone.
func (n *LeaseNames) Bind(hostname string, addr netip.Addr, expires time.Time) (string, bool) {
	name, ok := QualifyHost(hostname, n.zone())
	if !ok {
		return "", false
	}
	n.SetExpiring(name, addr, expires)
	return name, true
}

// Unbind removes hostname → addr (a lease released), leaving the name
// alone if it has moved to another address meanwhile.
func (n *LeaseNames) Unbind(hostname string, addr netip.Addr) {
	if name, ok := QualifyHost(hostname, n.zone()); ok {
		n.Remove(name, addr)
	}
}

func (n *LeaseNames) zone() string {
	if n.Zone == "" {
		return "."
	}
	return n.Zone
}

// QualifyHost turns a hostname a DHCP client sent (option 12) into a name
// in zone: "SMPC" and "smpc.lab" both give "smpc.lab." for zone "lab.". It
// reports false for anything that is not one valid host label (letters,
// digits, inner hyphens, at most 63 characters), optionally followed by the
// zone itself, so a client cannot place names elsewhere.
func QualifyHost(hostname, zone string) (string, bool) {
	zone = CanonicalName(zone)
	h := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(hostname), "."))
	if label, rest, found := strings.Cut(h, "."); found {
		if rest+"." != zone {
			return "", false
		}
		h = label
	}
	if len(h) == 0 || len(h) > 63 || h[0] == '-' || h[len(h)-1] == '-' {
		return "", false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return "", false
		}
	}
	if zone == "." {
		return h + ".", true
	}
	return h + "." + zone, true
}
