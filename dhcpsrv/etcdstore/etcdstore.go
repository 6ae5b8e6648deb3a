// Package etcdstore is a [dhcpsrv.LeaseStore] on etcd, for several DHCP
// servers serving one pool active-active: every server that opens a Store
// on the same etcd cluster and key prefix sees the same leases, and no
// address is ever bound or offered to two clients.
//
// # How
//
// Each address is one key, <prefix>dhcp/lease/<ip>, holding the lease as
// JSON; the record's [dhcpsrv.Lease.Rev] is the key's etcd mod revision.
// CompareAndSwap and CompareAndDelete are one etcd transaction each that
// compares that revision (a create revision of 0 for "no record"): there
// is no "read, then write" window in which another server's write could be
// lost.
//
// The Store also implements [dhcpsrv.OfferClaimer]: before a server's
// OFFER leaves, the address is claimed for the client under
// <prefix>dhcp/claim/<ip>, a key attached to an etcd lease whose time to
// live is the offer hold time (plus up to two seconds), so a claim
// disappears by itself when the client never asks. The claim's transaction
// also checks that the lease record is the one the server judged free.
// CompareAndSwap refuses (with [dhcpsrv.ErrConflict]) to bind an address
// to a client while another client's claim on it is alive: an address is
// never offered to two clients, nor ACKed to one while it is offered to
// another.
//
// Reads (Get, ByMAC, Leases) are answered from a local mirror of the
// prefix that a watch keeps current, so a server scanning its pool does
// not ask etcd once per address. A stale mirror costs a retry, never a
// duplicate: every write compares the revision the mirror holds, and a
// failed comparison brings the current record into the mirror.
//
// # Losing etcd
//
// Without a quorum behind it, a claim cannot be made and a lease cannot be
// written: a dhcpsrv.Server on this store then hands out no new address
// and ACKs nothing it could not store (each such packet is counted in
// Stats.StoreErrors and logged). [Store.Err] says so (for a health check):
// it wraps [ErrUnavailable] while the watch is down or the last request
// failed. Renewals are writes too: they work from any server as long as
// etcd has a quorum, and a client whose renewal is not answered keeps its
// address until the lease time ends (the DHCP client rebinds meanwhile).
// Losing one member of three loses nothing: the client moves to another.
//
// Use one client for several stores if you like; the Store does not close
// it.
package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Defaults: what the zero value of the Options field of the same name does.
const (
	// DefaultPrefix is the key prefix when Options.Prefix is empty.
	DefaultPrefix = "/metalboot/"
	// DefaultRequestTimeout bounds each etcd request when
	// Options.RequestTimeout is zero.
	DefaultRequestTimeout = 2 * time.Second
)

// ErrUnavailable is wrapped by the errors of a Store that cannot reach
// an etcd quorum, and by [Store.Err] while that is so.
var ErrUnavailable = errors.New("etcdstore: etcd unavailable")

// Options configure [Open].
type Options struct {
	// Prefix is prepended to every key ("": DefaultPrefix). Servers that
	// share a pool use the same prefix.
	Prefix string
	// RequestTimeout bounds each etcd request (zero: DefaultRequestTimeout;
	// negative is an error). The packet's context may end it sooner.
	RequestTimeout time.Duration
	// Logger receives the store's log lines (nil: discarded).
	Logger *slog.Logger
}

// Store is a dhcpsrv.LeaseStore and dhcpsrv.OfferClaimer on etcd. Make
// it with [Open]; it is safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	keys    map[string]int64 // revision at which each known key's state was seen
	leases  map[netip.Addr]dhcpsrv.Lease
	claims  map[netip.Addr]hwaddr.MAC
	claimOf map[hwaddr.MAC]netip.Addr
	byMAC   map[hwaddr.MAC]map[netip.Addr]struct{}
	synced  bool
	watchErr,
	reqErr error

	grantMu  sync.Mutex
	grantID  clientv3.LeaseID
	grantTTL int64
	grantAt  time.Time
}

var (
	_ dhcpsrv.LeaseStore   = (*Store)(nil)
	_ dhcpsrv.OfferClaimer = (*Store)(nil)
)

// Open loads every lease and claim under the prefix and starts the watch
// that keeps them current; it returns an error when etcd does not answer
// within the request timeout. Close stops the watch.
func Open(ctx context.Context, cli *clientv3.Client, opts Options) (*Store, error) {
	if cli == nil {
		return nil, errors.New("etcdstore: no etcd client")
	}
	if opts.RequestTimeout < 0 {
		return nil, fmt.Errorf("etcdstore: RequestTimeout is negative (%v)", opts.RequestTimeout)
	}
	s := &Store{
		cli: cli, prefix: opts.Prefix, timeout: opts.RequestTimeout, log: opts.Logger,
		keys: map[string]int64{}, leases: map[netip.Addr]dhcpsrv.Lease{},
		claims: map[netip.Addr]hwaddr.MAC{}, claimOf: map[hwaddr.MAC]netip.Addr{}, byMAC: map[hwaddr.MAC]map[netip.Addr]struct{}{},
		done: make(chan struct{}),
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.timeout == 0 {
		s.timeout = DefaultRequestTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	rev, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.watch(wctx, rev)
	return s, nil
}

// Close stops the watch. It does not close the etcd client.
func (s *Store) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// Err returns nil while the store is in touch with etcd: the watch is
// running and the last request succeeded. Otherwise it returns an error
// wrapping ErrUnavailable that says what failed; a dhcpsrv.Server on
// this store then hands out no new addresses.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.reqErr != nil:
		return fmt.Errorf("%w: last request: %w", ErrUnavailable, s.reqErr)
	case !s.synced:
		return fmt.Errorf("%w: watch: %w", ErrUnavailable, s.watchErr)
	}
	return nil
}

func (s *Store) leaseKey(ip netip.Addr) string { return s.prefix + "dhcp/lease/" + ip.String() }
func (s *Store) claimKey(ip netip.Addr) string { return s.prefix + "dhcp/claim/" + ip.String() }

// request runs op with the request timeout and records whether etcd
// answered.
func (s *Store) request(ctx context.Context, op func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := op(ctx)
	s.mu.Lock()
	s.reqErr = err
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// load reads the whole prefix into the mirror; it returns the revision
// read at.
func (s *Store) load(ctx context.Context) (int64, error) {
	var resp *clientv3.GetResponse
	err := s.request(ctx, func(ctx context.Context) (err error) {
		resp, err = s.cli.Get(ctx, s.prefix+"dhcp/", clientv3.WithPrefix())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("etcdstore: load %sdhcp/: %w", s.prefix, err)
	}
	rev := resp.Header.Revision
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		seen[string(kv.Key)] = true
		s.apply(string(kv.Key), kv.Value, kv.ModRevision, true)
	}
	for k := range s.keys {
		if !seen[k] {
			s.apply(k, nil, rev, false)
		}
	}
	return rev, nil
}

// watch keeps the mirror current from revision rev+1 on, reloading when
// the watch breaks (no leader, compaction, member lost).
func (s *Store) watch(ctx context.Context, rev int64) {
	defer close(s.done)
	s.setSynced(true, nil)
	for ctx.Err() == nil {
		err := s.follow(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		s.setSynced(false, err)
		s.log.Warn("etcdstore: watch ended; reloading", "err", err)
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			r, lerr := s.load(ctx)
			if lerr == nil {
				rev = r
				s.setSynced(true, nil)
				s.log.Info("etcdstore: watch resumed", "revision", rev)
				break
			}
			s.setSynced(false, lerr)
		}
	}
}

func (s *Store) setSynced(ok bool, err error) {
	s.mu.Lock()
	s.synced, s.watchErr = ok, err
	s.mu.Unlock()
}

// follow applies watch events until the watch ends; it returns why.
func (s *Store) follow(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range s.cli.Watch(wctx, s.prefix+"dhcp/", clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		for _, ev := range wr.Events {
			s.apply(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision, ev.Type == clientv3.EventTypePut)
		}
		s.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch channel closed")
}

// apply records that key had value (present) or was absent at revision
// rev, unless the mirror already knows a later state; s.mu held.
func (s *Store) apply(key string, value []byte, rev int64, present bool) {
	if seen, ok := s.keys[key]; ok && seen >= rev {
		return
	}
	s.keys[key] = rev
	rest, ok := strings.CutPrefix(key, s.prefix+"dhcp/")
	if !ok {
		return
	}
	kind, addr, _ := strings.Cut(rest, "/")
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		s.log.Warn("etcdstore: key with no address; ignored", "key", key)
		return
	}
	switch kind {
	case "lease":
		if old, ok := s.leases[ip]; ok {
			s.unindex(old)
			delete(s.leases, ip)
		}
		if !present {
			return
		}
		l, err := decodeLease(ip, value)
		if err != nil {
			// Never taken as free: an unreadable record blocks its
			// address (as a decline would) until an operator fixes it.
			s.log.Error("etcdstore: lease record does not decode; address blocked", "key", key, "err", err)
			l = dhcpsrv.Lease{IP: ip, State: dhcpsrv.StateDeclined, Expires: time.Unix(math.MaxInt32, 0)}
		}
		l.Rev = uint64(rev)
		s.leases[ip] = l
		if !l.MAC.IsZero() {
			m := s.byMAC[l.MAC]
			if m == nil {
				m = map[netip.Addr]struct{}{}
				s.byMAC[l.MAC] = m
			}
			m[ip] = struct{}{}
		}
	case "claim":
		if old, ok := s.claims[ip]; ok {
			delete(s.claims, ip)
			if s.claimOf[old] == ip {
				delete(s.claimOf, old)
			}
		}
		if !present {
			return
		}
		mac, err := hwaddr.Parse(string(value))
		if err != nil {
			s.log.Error("etcdstore: claim does not decode; address held until it expires", "key", key, "err", err)
		}
		s.claims[ip] = mac
		if !mac.IsZero() {
			s.claimOf[mac] = ip
		}
	}
}

func (s *Store) unindex(l dhcpsrv.Lease) {
	if m := s.byMAC[l.MAC]; m != nil {
		delete(m, l.IP)
		if len(m) == 0 {
			delete(s.byMAC, l.MAC)
		}
	}
}

func decodeLease(ip netip.Addr, b []byte) (dhcpsrv.Lease, error) {
	var l dhcpsrv.Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return l, err
	}
	if l.IP != ip {
		return l, fmt.Errorf("record is for %v", l.IP)
	}
	return l, nil
}

// Get implements dhcpsrv.LeaseStore from the mirror (no etcd request).
func (s *Store) Get(_ context.Context, ip netip.Addr) (dhcpsrv.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[ip]
	if !ok {
		return dhcpsrv.Lease{}, fmt.Errorf("%w: %v", dhcpsrv.ErrNotFound, ip)
	}
	return l, nil
}

// ByMAC implements dhcpsrv.LeaseStore from the mirror (no etcd request).
func (s *Store) ByMAC(_ context.Context, mac hwaddr.MAC) (dhcpsrv.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best dhcpsrv.Lease
	for ip := range s.byMAC[mac] {
		if l := s.leases[ip]; l.Rev > best.Rev {
			best = l
		}
	}
	if best.Rev == 0 {
		return dhcpsrv.Lease{}, fmt.Errorf("%w: %v", dhcpsrv.ErrNotFound, mac)
	}
	return best, nil
}

// Leases returns every lease record the mirror holds, sorted by address.
func (s *Store) Leases() []dhcpsrv.Lease {
	s.mu.Lock()
	out := make([]dhcpsrv.Lease, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, l)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b dhcpsrv.Lease) int { return a.IP.Compare(b.IP) })
	return out
}

// Claims returns the live offer claims the mirror holds: address →
// client.
func (s *Store) Claims() map[netip.Addr]hwaddr.MAC {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.Addr]hwaddr.MAC, len(s.claims))
	for ip, m := range s.claims {
		out[ip] = m
	}
	return out
}

// Claimed implements dhcpsrv.OfferClaimer from the mirror: the address
// claimed for mac (by any server), if any.
func (s *Store) Claimed(_ context.Context, mac hwaddr.MAC) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ip, ok := s.claimOf[mac]
	return ip, ok
}

// leaseCmp compares key's revision with what the mirror holds (absent: no
// key may exist); s.mu held.
func (s *Store) leaseCmp(ip netip.Addr) clientv3.Cmp {
	key := s.leaseKey(ip)
	if l, ok := s.leases[ip]; ok {
		return clientv3.Compare(clientv3.ModRevision(key), "=", int64(l.Rev))
	}
	return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
}

// claimCmp is the condition under which ip may be bound or claimed for
// mac: no claim, or one of mac's; ok is false when the mirror shows
// another client's claim; s.mu held.
func (s *Store) claimCmp(ip netip.Addr, mac hwaddr.MAC) (cmp clientv3.Cmp, ok bool) {
	key := s.claimKey(ip)
	holder, claimed := s.claims[ip]
	switch {
	case !claimed:
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0), true
	case holder == mac:
		return clientv3.Compare(clientv3.Value(key), "=", mac.String()), true
	default:
		return clientv3.Cmp{}, false
	}
}

// refresh brings the records an Else branch read into the mirror.
func (s *Store) refresh(resp *clientv3.TxnResponse, keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range resp.Responses {
		rr := r.GetResponseRange()
		if rr == nil || i >= len(keys) {
			continue
		}
		if len(rr.Kvs) == 0 {
			s.apply(keys[i], nil, resp.Header.Revision, false)
			continue
		}
		for _, kv := range rr.Kvs {
			s.apply(string(kv.Key), kv.Value, kv.ModRevision, true)
		}
	}
}

// CompareAndSwap implements dhcpsrv.LeaseStore as one etcd transaction:
// the lease key's mod revision must be prevRev (create revision 0 when
// prevRev is 0) and, when l binds the address, no other client's offer
// claim may be alive. It returns when etcd committed the write (a quorum
// has it on disk).
func (s *Store) CompareAndSwap(ctx context.Context, prevRev uint64, l dhcpsrv.Lease) (dhcpsrv.Lease, error) {
	if !l.IP.Is4() {
		return dhcpsrv.Lease{}, fmt.Errorf("etcdstore: lease address %v is not IPv4", l.IP)
	}
	key, ckey := s.leaseKey(l.IP), s.claimKey(l.IP)
	l.Rev = 0
	val, err := json.Marshal(l)
	if err != nil {
		return dhcpsrv.Lease{}, err
	}
	revCmp := clientv3.Compare(clientv3.ModRevision(key), "=", int64(prevRev))
	if prevRev == 0 {
		revCmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	var resp *clientv3.TxnResponse
	for attempt := 0; ; attempt++ {
		cmps := []clientv3.Cmp{revCmp}
		if l.State == dhcpsrv.StateBound {
			s.mu.Lock()
			c, ok := s.claimCmp(l.IP, l.MAC)
			s.mu.Unlock()
			if !ok {
				// The mirror shows another client's claim; if it is
				// gone already, this comparison still succeeds.
				c = clientv3.Compare(clientv3.CreateRevision(ckey), "=", 0)
			}
			cmps = append(cmps, c)
		}
		err = s.request(ctx, func(ctx context.Context) (err error) {
			resp, err = s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(val))).
				Else(clientv3.OpGet(key), clientv3.OpGet(ckey)).Commit()
			return err
		})
		if err != nil {
			return dhcpsrv.Lease{}, fmt.Errorf("etcdstore: write %s: %w", key, err)
		}
		if resp.Succeeded {
			break
		}
		s.refresh(resp, key, ckey)
		// Only the claim comparison failed, on a mirror that had not
		// seen the claim of l's own client yet: compare again.
		if attempt == 0 && l.State == dhcpsrv.StateBound && s.onlyClaimFailed(l, prevRev) {
			continue
		}
		return dhcpsrv.Lease{}, fmt.Errorf("%w: %v (etcd revision %d)", dhcpsrv.ErrConflict, l.IP, resp.Header.Revision)
	}
	l.Rev = uint64(resp.Header.Revision)
	s.mu.Lock()
	s.apply(key, val, resp.Header.Revision, true)
	s.mu.Unlock()
	return l, nil
}

// onlyClaimFailed reports whether, after a refresh, the lease record of
// l.IP is still at prevRev and the claim on it is l.MAC's (or none).
func (s *Store) onlyClaimFailed(l dhcpsrv.Lease, prevRev uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.leases[l.IP]
	if ok != (prevRev != 0) || ok && cur.Rev != prevRev {
		return false
	}
	_, free := s.claimCmp(l.IP, l.MAC)
	return free
}

// CompareAndDelete implements dhcpsrv.LeaseStore as one etcd transaction
// on the lease key's mod revision.
func (s *Store) CompareAndDelete(ctx context.Context, ip netip.Addr, rev uint64) error {
	key := s.leaseKey(ip)
	var resp *clientv3.TxnResponse
	err := s.request(ctx, func(ctx context.Context) (err error) {
		resp, err = s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", int64(rev))).
			Then(clientv3.OpDelete(key)).Else(clientv3.OpGet(key)).Commit()
		return err
	})
	if err != nil {
		return fmt.Errorf("etcdstore: delete %s: %w", key, err)
	}
	if !resp.Succeeded {
		s.refresh(resp, key)
		return fmt.Errorf("%w: %v", dhcpsrv.ErrConflict, ip)
	}
	s.mu.Lock()
	s.apply(key, nil, resp.Header.Revision, false)
	s.mu.Unlock()
	return nil
}

// ClaimOffer implements dhcpsrv.OfferClaimer: one etcd transaction puts
// the claim on an etcd lease of about hold, if no other client's claim is
// alive and the lease record of ip is still the one the mirror holds (the
// one the server judged free). Otherwise it returns an error wrapping
// dhcpsrv.ErrConflict, having read the current records into the mirror.
func (s *Store) ClaimOffer(ctx context.Context, ip netip.Addr, mac hwaddr.MAC, hold time.Duration) error {
	key, ckey := s.claimKey(ip), s.leaseKey(ip)
	s.mu.Lock()
	c, ok := s.claimCmp(ip, mac)
	lc := s.leaseCmp(ip)
	holder := s.claims[ip]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %v is claimed for %v", dhcpsrv.ErrConflict, ip, holder)
	}
	for attempt := 0; ; attempt++ {
		id, err := s.grant(ctx, hold, attempt > 0)
		if err != nil {
			return err
		}
		var resp *clientv3.TxnResponse
		err = s.request(ctx, func(ctx context.Context) (err error) {
			resp, err = s.cli.Txn(ctx).If(c, lc).Then(clientv3.OpPut(key, mac.String(), clientv3.WithLease(id))).
				Else(clientv3.OpGet(key), clientv3.OpGet(ckey)).Commit()
			return err
		})
		if err != nil {
			if attempt == 0 && strings.Contains(err.Error(), "lease not found") {
				continue // the shared etcd lease expired: grant a new one
			}
			return fmt.Errorf("etcdstore: claim %s: %w", key, err)
		}
		if !resp.Succeeded {
			s.refresh(resp, key, ckey)
			return fmt.Errorf("%w: %v changed or is claimed by another client", dhcpsrv.ErrConflict, ip)
		}
		s.mu.Lock()
		s.apply(key, []byte(mac.String()), resp.Header.Revision, true)
		s.mu.Unlock()
		return nil
	}
}

// grant returns an etcd lease for claims held about hold: one lease is
// shared by the claims made within a second, so a claim lives between
// hold and hold+2s.
func (s *Store) grant(ctx context.Context, hold time.Duration, fresh bool) (clientv3.LeaseID, error) {
	ttl := int64(math.Ceil(hold.Seconds())) + 1
	if ttl < 2 {
		ttl = 2
	}
	s.grantMu.Lock()
	defer s.grantMu.Unlock()
	if !fresh && s.grantID != 0 && s.grantTTL == ttl && time.Since(s.grantAt) < time.Second {
		return s.grantID, nil
	}
	var resp *clientv3.LeaseGrantResponse
	err := s.request(ctx, func(ctx context.Context) (err error) {
		resp, err = s.cli.Grant(ctx, ttl)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("etcdstore: grant a claim lease: %w", err)
	}
	s.grantID, s.grantTTL, s.grantAt = resp.ID, ttl, time.Now()
	return resp.ID, nil
}
