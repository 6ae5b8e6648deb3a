package dhcpsrv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/sockets"
)

// Ports used by the server.
const (
	ServerPort = 67   // DHCP server port
	ClientPort = 68   // DHCP client port
	PXEPort    = 4011 // PXE boot server port (proxyDHCP requests)
)

// Defaults: what the zero value of the Server (and Subnet) field of the
// same name does.
const (
	// DefaultLeaseTime is the lease time of a Subnet whose LeaseTime is
	// zero.
	DefaultLeaseTime = time.Hour
	// DefaultOfferTime is how long an OFFER holds its address for a client
	// that has not sent its REQUEST yet. It is short so that clients
	// which DISCOVER and never REQUEST (broken, or an attacker cycling
	// fake MACs) cannot hold a small pool: Kea holds nothing for an
	// OFFER by default (the DISCOVER is a "fake allocation"; its
	// offer-lifetime is 0 unless configured), ISC dhcpd lets an offer
	// nobody REQUESTed lapse after two minutes (server/dhcp.c). Ten
	// seconds cover a PXE firmware that collects offers for its whole
	// first DISCOVER window before it REQUESTs (4 s, then 8 s: EDK2's
	// mPxeDhcpTimeout, from the PXE 2.1 spec). A REQUEST that comes later
	// is still ACKed if nobody took the address meanwhile, and an
	// exhausted pool reclaims the oldest offer before it answers "no
	// address" (see Server.OfferTime).
	DefaultOfferTime = 10 * time.Second
	// DefaultDeclineTime is how long an address a client declined is
	// quarantined when Server.DeclineTime is zero.
	DefaultDeclineTime = 10 * time.Minute
	// DefaultWorkers is the number of packets handled at once per socket
	// when Server.Workers is zero.
	DefaultWorkers = 1024
)

// Sentinel errors of the server.
var (
	// ErrConfig wraps every error [Server.Validate] reports (and so every
	// configuration error Listen, Serve and ListenAndServe return).
	ErrConfig = errors.New("dhcpsrv: invalid configuration")
	// ErrNoSubnet is reported (with ErrConfig) when the server has no
	// subnet to serve and is not a proxyDHCP server.
	ErrNoSubnet = errors.New("dhcpsrv: no subnet configured")
	// ErrNoListener is returned by Serve when given no connection.
	ErrNoListener = errors.New("dhcpsrv: no connection to serve")
)

// Range is an inclusive range of pool addresses, e.g. {From: 10.99.0.100,
// To: 10.99.0.200}.
type Range struct {
	From, To netip.Addr
}

// Subnet is one IPv4 network the server hands addresses out on.
type Subnet struct {
	// Prefix is the network, e.g. 10.99.0.0/24 (option 1 is derived from
	// it). It must be an IPv4 prefix that overlaps no other Subnet's.
	Prefix netip.Prefix
	// Ranges are the dynamic pool: IPv4 addresses inside Prefix, From not
	// after To, no two ranges overlapping. Empty means reservations only.
	Ranges []Range
	// Router is option 3 (the zero Addr: not sent). It must be IPv4.
	Router netip.Addr
	// DNS is option 6 (empty: not sent). Each must be IPv4.
	DNS []netip.Addr
	// Domain is option 15 ("": not sent). It must pass ValidHostname.
	Domain string
	// LeaseTime is option 51 (zero: DefaultLeaseTime; negative is a
	// configuration error).
	LeaseTime time.Duration
}

// Handler adds to or changes a reply the server built. It is called for
// every reply (OFFER, ACK, NAK, proxyDHCP answers) just before it is sent,
// in the coredhcp style: build a request, call it, look at the response.
type Handler interface {
	ServeDHCP(ctx context.Context, req, resp *dhcpv4.DHCPv4)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req, resp *dhcpv4.DHCPv4)

// ServeDHCP calls f.
func (f HandlerFunc) ServeDHCP(ctx context.Context, req, resp *dhcpv4.DHCPv4) { f(ctx, req, resp) }

// Event describes a DISCOVER (or a proxyDHCP request) for OnDiscover.
type Event struct {
	Time        time.Time
	MAC         hwaddr.MAC
	Arch        Arch
	UUID        string
	VendorClass string
	// Relay is giaddr (invalid when the client is on the local link).
	Relay netip.Addr
	// Offered is the address offered (invalid: none, e.g. pool exhausted
	// or proxyDHCP).
	Offered netip.Addr
	// BootFile is the boot file offered ("" when none).
	BootFile string
}

// Server is a DHCPv4 server for network boot. Set the exported fields, then
// call ListenAndServe, or Listen and Serve; do not change them afterwards.
// It follows the metalboot server contract (see the package documentation
// of github.com/metalboot/metalboot): Validate reports every configuration
// mistake, the zero value of a field means its DefaultX, a nil Logger
// discards. The zero Server is not valid: at least Subnets is needed (or
// ProxyDHCP), and ServerIP or Interface.
type Server struct {
	// Interface is the network interface served: ports 67 (and 4011) are
	// bound to it with SO_BINDTODEVICE, which only Linux has (elsewhere a
	// non-empty Interface is a Validate error wrapping
	// errors.ErrUnsupported). Empty serves whatever reaches the sockets
	// on any interface (not recommended: DHCP answers on every network).
	Interface string
	// ServerIP is this server's address on Interface: option 54, and it
	// picks the local subnet. The zero Addr: the interface's first IPv4
	// address, found when the server starts (then Interface is needed).
	ServerIP netip.Addr
	// Subnets are the networks served. A relayed request (giaddr set) is
	// served from the subnet containing giaddr; a local one from the
	// subnet containing ServerIP (else the first). Empty is an error
	// unless ProxyDHCP is set.
	Subnets []Subnet
	// Reservations gives fixed addresses by MAC (nil: none).
	Reservations ReservationSource
	// Boot chooses boot files by client architecture (zero value:
	// DefaultBootFiles, no HTTP boot).
	Boot BootPolicy
	// NextServer is the TFTP server (siaddr, option 66); the zero Addr:
	// ServerIP. It must be IPv4.
	NextServer netip.Addr
	// Leases stores leases (nil: an in-memory store, lost on exit; use
	// OpenJournal for persistence).
	Leases LeaseStore
	// ProxyDHCP answers only PXE/HTTP-boot clients, with boot options and
	// no address, on ports 67 and 4011, beside another DHCP server.
	ProxyDHCP bool
	// OfferTime is how long an offered address is held for the client
	// (zero or negative: DefaultOfferTime). An offer is a soft hold:
	// when the pool has no other free address, the oldest address that
	// is only offered (never ACKed) to another client is reclaimed
	// (Stats.OffersReclaimed) before a DISCOVER goes unanswered. An ACKed
	// lease is never reclaimed before it expires.
	OfferTime time.Duration
	// DeclineTime is how long a declined address is quarantined (zero or
	// negative: DefaultDeclineTime).
	DeclineTime time.Duration
	// Workers is the number of packets handled concurrently per socket.
	// An ACK holds its worker until the lease store's fsync returns; many
	// workers let a slow fsync be shared by many ACKs while DISCOVERs
	// keep being answered. With 1, the goroutine that reads a packet
	// handles it: no hand-over between goroutines, the least CPU per
	// packet, right when writes do not wait for the disk. Zero or
	// negative: 1 when the lease store is a Journal that does not fsync
	// before each write returns (JournalOptions.SyncInterval, or
	// NewMemoryStore), DefaultWorkers otherwise.
	Workers int
	// Handler, if set, may change each reply before it is sent (nil: none).
	Handler Handler
	// Clock returns the current time (nil: time.Now). Tests set a fake.
	Clock func() time.Time
	// Logger receives the server's log lines (nil: discarded).
	Logger *slog.Logger
	// OnDiscover (nil: none) is called for each DISCOVER answered or
	// not. Hooks run synchronously on the packet path: keep them fast.
	OnDiscover func(Event)
	// OnLease (nil: none) is called after a lease is stored and before
	// its ACK is sent.
	OnLease func(Lease)
	// OnRelease (nil: none) is called after a client released its
	// lease.
	OnRelease func(Lease)

	initOnce sync.Once
	prepMu   sync.Mutex
	sid      netip.Addr // server identifier: ServerIP or the interface's address
	log      *slog.Logger
	store    LeaseStore
	subnets  []*subnet
	stats    counters

	mu         sync.Mutex // offers and pool cursors
	offers     map[netip.Addr]offer
	offerByMAC map[hwaddr.MAC]netip.Addr
	sweepAt    int // purge expired offers when len(offers) reaches this
}

type offer struct {
	mac   hwaddr.MAC
	until time.Time
	ci    ClientInfo // what the DISCOVER said, for REQUESTs that omit it
}

type subnet struct {
	Subnet
	ranges []uRange
	size   uint64
	cursor uint64
}

type uRange struct{ from, to uint32 }

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addrU32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// validRange reports whether r is a usable range of prefix p.
func validRange(r Range, p netip.Prefix) bool {
	return r.From.Is4() && r.To.Is4() && p.Contains(r.From) && p.Contains(r.To) && !r.To.Less(r.From)
}

// Validate reports every configuration mistake of s, each naming its
// field, joined in one error (errors.Join) whose parts wrap [ErrConfig];
// nil means the configuration is usable. It binds nothing and looks at no
// interface: Listen reports what only the system can tell (a missing
// interface, a port in use). Listen, Serve and ListenAndServe call it
// first and return its error.
func (s *Server) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...)))
	}
	if s.Interface != "" && !bindToDeviceSupported {
		errs = append(errs, fmt.Errorf("%w: Interface %q: binding to one interface (SO_BINDTODEVICE) is Linux's: %w",
			ErrConfig, s.Interface, errors.ErrUnsupported))
	}
	switch {
	case s.ServerIP.IsValid() && !s.ServerIP.Is4():
		bad("ServerIP", "%v is not an IPv4 address", s.ServerIP)
	case !s.ServerIP.IsValid() && s.Interface == "":
		bad("ServerIP", "unset, and no Interface to take it from")
	}
	if s.NextServer.IsValid() && !s.NextServer.Is4() {
		bad("NextServer", "%v is not an IPv4 address", s.NextServer)
	}
	if len(s.Subnets) == 0 && !s.ProxyDHCP {
		errs = append(errs, fmt.Errorf("%w: Subnets: %w (and ProxyDHCP is off)", ErrConfig, ErrNoSubnet))
	}
	for i, sn := range s.Subnets {
		f := fmt.Sprintf("Subnets[%d]", i)
		if !sn.Prefix.IsValid() || !sn.Prefix.Addr().Is4() {
			bad(f+".Prefix", "%v is not an IPv4 network", sn.Prefix)
			continue
		}
		for j, other := range s.Subnets[:i] {
			if other.Prefix.IsValid() && other.Prefix.Addr().Is4() && other.Prefix.Overlaps(sn.Prefix) {
				bad(f+".Prefix", "%v overlaps Subnets[%d] %v", sn.Prefix, j, other.Prefix)
			}
		}
		for j, r := range sn.Ranges {
			if !validRange(r, sn.Prefix) {
				bad(fmt.Sprintf("%s.Ranges[%d]", f, j), "%v-%v: want two IPv4 addresses inside %v, the first not after the last", r.From, r.To, sn.Prefix)
				continue
			}
			for k, o := range sn.Ranges[:j] {
				if validRange(o, sn.Prefix) && !(r.To.Less(o.From) || o.To.Less(r.From)) {
					bad(fmt.Sprintf("%s.Ranges[%d]", f, j), "%v-%v overlaps Ranges[%d] %v-%v", r.From, r.To, k, o.From, o.To)
				}
			}
		}
		if sn.Router.IsValid() && !sn.Router.Is4() {
			bad(f+".Router", "%v is not an IPv4 address", sn.Router)
		}
		for j, d := range sn.DNS {
			if !d.Is4() {
				bad(fmt.Sprintf("%s.DNS[%d]", f, j), "%v is not an IPv4 address", d)
			}
		}
		if sn.Domain != "" {
			if _, ok := ValidHostname(sn.Domain); !ok {
				bad(f+".Domain", "%s is not a valid domain name", quoteForLog(sn.Domain))
			}
		}
		if sn.LeaseTime < 0 {
			bad(f+".LeaseTime", "negative (%v)", sn.LeaseTime)
		}
	}
	if static, ok := s.Reservations.(StaticReservations); ok {
		for mac, r := range static {
			f := fmt.Sprintf("Reservations[%s]", mac)
			switch {
			case mac.IsZero():
				bad("Reservations", "the zero MAC cannot have a reservation")
			case !r.IP.Is4():
				bad(f+".IP", "%v is not an IPv4 address", r.IP)
			case !s.ProxyDHCP && !s.inSomeSubnet(r.IP):
				bad(f+".IP", "%v is in no subnet served", r.IP)
			}
			// A host name that fails ValidHostname is no reason to
			// stop DHCP: like any source's, it is left out (and logged)
			// when the machine asks.
		}
	}
	if b := s.Boot.HTTPBase; b != "" {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("Boot.HTTPBase", "%s: want an http:// or https:// URL with a host", quoteForLog(b))
		}
	}
	if b := s.Boot.IPXEScript; b != "" {
		u, err := url.Parse(b)
		if err != nil || u.Scheme == "" || u.Host == "" || strings.ContainsAny(b, " \t\r\n") || len(b) > 127 {
			bad("Boot.IPXEScript", "%s: want a URL iPXE fetches, e.g. http://10.99.0.1:8080/boot.ipxe (at most 127 bytes: it goes in the BOOTP file field)", quoteForLog(b))
		}
	}
	if s.Boot.Loader != nil && s.Boot.IPXEScript == "" {
		bad("Boot.IPXEScript", "required with Boot.Loader: a client running iPXE must be handed its script, not the iPXE binary again")
	}
	return errors.Join(errs...)
}

// inSomeSubnet reports whether ip lies in one of s.Subnets.
func (s *Server) inSomeSubnet(ip netip.Addr) bool {
	for _, sn := range s.Subnets {
		if sn.Prefix.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
		s.store = s.Leases
		if s.store == nil {
			s.store = NewMemoryStore()
		}
		s.offers = map[netip.Addr]offer{}
		s.offerByMAC = map[hwaddr.MAC]netip.Addr{}
		for _, sn := range s.Subnets {
			x := &subnet{Subnet: sn}
			for _, r := range sn.Ranges {
				if !validRange(r, sn.Prefix) {
					continue // reported by Validate; the server does not start
				}
				x.ranges = append(x.ranges, uRange{u32(r.From), u32(r.To)})
				x.size += uint64(u32(r.To)-u32(r.From)) + 1
			}
			s.subnets = append(s.subnets, x)
		}
		if j, ok := s.store.(*Journal); ok {
			s.reportRecovery(j.Recovery())
		}
	})
}

// reportRecovery logs what the journal dropped when it was opened and
// counts the removed fields.
func (s *Server) reportRecovery(r JournalRecovery) {
	if r.TornBytes > 0 {
		s.log.Warn("dhcpsrv: lease journal ended in a torn record (crash during an append); dropped it",
			"file", r.File, "offset", r.TornOffset, "bytes", r.TornBytes, "record", quoteForLog(r.TornRecord))
	}
	for _, d := range r.Dropped {
		s.log.Warn("dhcpsrv: lease journal record had an invalid "+d.Field+"; dropped the field, kept the lease",
			"file", r.File, "offset", d.Offset, "ip", d.IP, d.Field, quoteForLog(d.Value))
	}
	s.stats.badHostname.Add(uint64(r.BadHostnames))
	s.stats.badUUID.Add(uint64(r.BadUUIDs))
}

// prepare validates the configuration, initialises the server and
// resolves the server identifier.
func (s *Server) prepare() error {
	s.init()
	s.prepMu.Lock()
	defer s.prepMu.Unlock()
	if s.sid.IsValid() {
		return nil // validated before: the fields do not change once serving
	}
	if err := s.Validate(); err != nil {
		return err
	}
	ip := s.ServerIP
	if !ip.IsValid() {
		var err error
		if ip, err = interfaceIPv4(s.Interface); err != nil {
			return err
		}
	}
	s.sid = ip
	return nil
}

func (s *Server) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

// Lease returns the active lease of mac, if any, asking the lease store
// with ctx. A store error other than ErrNotFound is returned. A host name
// or UUID in the stored record that fails [ValidHostname] or [ValidUUID]
// (a lease store may hold anything) is left out, logged and counted in
// Stats.
func (s *Server) Lease(ctx context.Context, mac hwaddr.MAC) (Lease, bool, error) {
	s.init()
	l, err := s.store.ByMAC(ctx, mac)
	if errors.Is(err, ErrNotFound) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("dhcpsrv: lease of %s: %w", mac, err)
	}
	if !l.Active(s.now()) {
		return Lease{}, false, nil
	}
	return s.checkStored(l), true, nil
}

// checkStored validates the strings of a lease read from the store.
func (s *Server) checkStored(l Lease) Lease {
	out, badHost, badUUID := checkLease(l)
	if badHost {
		s.stats.badHostname.Add(1)
		s.log.Warn("dhcpsrv: stored lease has an invalid host name; left out", "mac", l.MAC, "ip", l.IP, "hostname", quoteForLog(l.Hostname))
	}
	if badUUID {
		s.stats.badUUID.Add(1)
		s.log.Warn("dhcpsrv: stored lease has an invalid UUID; left out", "mac", l.MAC, "ip", l.IP, "uuid", quoteForLog(l.UUID))
	}
	return out
}

// clientHostname returns the client's option 12 if it is a valid host
// name (normalised by ValidHostname), else "" — counted and logged with
// the value quoted. Trailing NULs, which some clients add, are ignored.
func (s *Server) clientHostname(req *dhcpv4.DHCPv4, mac hwaddr.MAC, level slog.Level) string {
	v := req.Options.Get(dhcpv4.OptionHostName)
	if v == nil {
		return ""
	}
	raw := strings.TrimRight(string(v), "\x00")
	h, ok := ValidHostname(raw)
	if !ok {
		s.stats.badHostname.Add(1)
		s.log.Log(context.Background(), level, "dhcpsrv: client sent an invalid host name (option 12); ignored",
			"mac", mac, "type", req.MessageType().String(), "hostname", quoteForLog(string(v)))
		return ""
	}
	return h
}

// leaseHostname is the host name for mac's lease: the reservation's, else
// the client's option 12, validated.
func (s *Server) leaseHostname(req *dhcpv4.DHCPv4, mac hwaddr.MAC, r Reservation, reserved bool, level slog.Level) string {
	if reserved && r.Hostname != "" {
		if h, ok := ValidHostname(r.Hostname); ok {
			return h
		}
		s.log.Warn("dhcpsrv: reservation host name is not a valid host name; ignored", "mac", mac, "hostname", quoteForLog(r.Hostname))
	}
	return s.clientHostname(req, mac, level)
}

// Listen validates the configuration and opens the sockets Serve takes:
// UDP port 67 on Interface, and port 4011 as well in proxyDHCP mode. A
// bind error (port taken on the interface, unknown interface, no
// permission) is returned here, before anything is served, and no socket
// stays open. In proxyDHCP mode port 67 is opened with SO_REUSEADDR so a
// DHCP server on the same host (that also sets it) can keep running. The
// caller owns the sockets: Serve does not close them.
func (s *Server) Listen(ctx context.Context) ([]net.PacketConn, error) {
	if err := s.prepare(); err != nil {
		return nil, err
	}
	ports := []int{ServerPort}
	if s.ProxyDHCP {
		ports = append(ports, PXEPort)
	}
	var conns []net.PacketConn
	for _, p := range ports {
		c, err := listenUDP(ctx, s.Interface, p, s.ProxyDHCP)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// ListenAndServe is Listen then Serve: it serves until ctx ends, then
// closes the sockets it opened and returns nil. Configuration and bind
// errors are returned at once.
func (s *Server) ListenAndServe(ctx context.Context) error {
	conns, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	return s.Serve(ctx, conns...)
}

// ListenUDP opens a broadcast-capable IPv4 UDP socket on port, bound to
// device iface with SO_BINDTODEVICE when iface is not empty. It fails when
// another socket already holds the port on that interface (or on all
// interfaces): two DHCP servers on one link is a configuration error.
// SO_BINDTODEVICE is Linux's: elsewhere a non-empty iface is an error
// wrapping errors.ErrUnsupported.
func ListenUDP(ctx context.Context, iface string, port int) (net.PacketConn, error) {
	return listenUDP(ctx, iface, port, false)
}

// listenUDP with reuse sets SO_REUSEADDR, so a proxyDHCP server can share
// port 67 with a DHCP server on the same host.
func listenUDP(ctx context.Context, iface string, port int, reuse bool) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if reuse {
				if serr = setSockoptInt(fd, syscall.SO_REUSEADDR); serr != nil {
					return
				}
			}
			if serr = setSockoptInt(fd, syscall.SO_BROADCAST); serr != nil {
				return
			}
			if iface != "" {
				serr = bindToDevice(int(fd), iface)
			}
		})
		return errors.Join(err, serr)
	}}
	c, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("dhcpsrv: listen on %s port %d: %w", iface, port, err)
	}
	// A larger receive buffer absorbs bursts while ACKs wait for fsync
	// (capped by net.core.rmem_max; failure is harmless).
	_ = c.(*net.UDPConn).SetReadBuffer(4 << 20)
	return c, nil
}

func interfaceIPv4(name string) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcpsrv: interface %s: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcpsrv: interface %s addresses: %w", name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP.To4()); ok && n.IP.To4() != nil {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("dhcpsrv: interface %s has no IPv4 address; set ServerIP", name)
}

type packet struct {
	buf  []byte
	peer net.Addr
}

// Serve answers DHCP packets arriving on conns (sockets the caller
// opened, with Listen or ListenUDP) until ctx ends, then returns nil. It
// never closes them, and leaves no read deadline set on them. A
// connection on port 4011 is served as the PXE boot-server port. It
// returns the configuration error of Validate without serving, and
// ErrNoListener without conns. A read error other than the end of ctx
// stops every connection and is returned.
func (s *Server) Serve(ctx context.Context, conns ...net.PacketConn) error {
	if err := s.prepare(); err != nil {
		return err
	}
	if len(conns) == 0 {
		return ErrNoListener
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			err := s.serveConn(ctx, c)
			if err != nil {
				cancel() // one socket failed: stop the others
			}
			errc <- err
		}()
	}
	var errs []error
	for range conns {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// serveConn serves one socket until ctx ends.
func (s *Server) serveConn(ctx context.Context, conn net.PacketConn) error {
	port := ServerPort
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		port = ua.Port
	}
	defer sockets.InterruptReads(ctx, conn.SetReadDeadline)()
	workers := s.Workers
	if workers <= 0 {
		workers = DefaultWorkers
		if j, ok := s.store.(*Journal); ok && !j.waitsForDisk() {
			workers = 1
		}
	}
	if workers == 1 {
		return s.serveInline(ctx, conn, port)
	}
	jobs := make(chan packet, workers*4)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range jobs {
				out, dst := s.handlePacket(ctx, p.buf, port, p.peer)
				s.send(conn, out, dst)
			}
		})
	}
	defer wg.Wait()
	defer close(jobs)
	for {
		buf := make([]byte, 1500)
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if again, err := readFailed(ctx, err); !again {
				return err
			}
			continue
		}
		s.stats.packetsIn.Add(1)
		jobs <- packet{buf[:n], peer}
	}
}

// readFailed tells a read error to retry (a deadline that is not the end
// of ctx) from the end of serving: nil when ctx ended, the error otherwise.
func readFailed(ctx context.Context, err error) (again bool, _ error) {
	if ctx.Err() != nil {
		return false, nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true, nil
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return false, fmt.Errorf("dhcpsrv: connection closed: %w", err)
	}
	return false, fmt.Errorf("dhcpsrv: read: %w", err)
}

// serveInline reads and handles packets in one goroutine (Workers 1). On
// Linux (amd64, arm64) it reads and answers in batches with raw system
// calls (internal/sockets.ServeUDP): Go's ReadFrom and WriteTo let the
// runtime hand the processor to another thread during most sends.
func (s *Server) serveInline(ctx context.Context, conn net.PacketConn, port int) error {
	if udp, ok := conn.(*net.UDPConn); ok && sockets.RawUDP {
		_, err := sockets.ServeUDP(udp, 1500, func(b []byte, from netip.AddrPort, _ []byte) ([]byte, netip.AddrPort) {
			s.stats.packetsIn.Add(1)
			// b is reused for the next datagram: handlePacket keeps
			// nothing of it (FromBytes copies), except through hooks,
			// which get decoded values.
			out, dst := s.handlePacket(ctx, b, port, net.UDPAddrFromAddrPort(from))
			if out == nil {
				return nil, netip.AddrPort{}
			}
			s.stats.packetsOut.Add(1)
			ua, _ := dst.(*net.UDPAddr)
			if ua == nil {
				return out, netip.AddrPort{}
			}
			ap := ua.AddrPort()
			return out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}, func(err error) {
			s.stats.packetsOut.Add(^uint64(0)) // counted when handed over; not sent
			s.stats.sendErrors.Add(1)
			s.log.Warn("dhcpsrv: send", "err", err)
		})
		if again, rerr := readFailed(ctx, err); !again {
			return rerr
		}
	}
	for {
		buf := make([]byte, 1500) // nothing of a packet outlives it, but a hook may keep a reference
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if again, err := readFailed(ctx, err); !again {
				return err
			}
			continue
		}
		s.stats.packetsIn.Add(1)
		out, dst := s.handlePacket(ctx, buf[:n], port, peer)
		s.send(conn, out, dst)
	}
}

// send writes a reply (nothing when out is nil).
func (s *Server) send(conn net.PacketConn, out []byte, dst net.Addr) {
	if out == nil {
		return
	}
	if _, err := conn.WriteTo(out, dst); err != nil {
		s.stats.sendErrors.Add(1)
		s.log.Warn("dhcpsrv: send", "to", dst, "err", err)
		return
	}
	s.stats.packetsOut.Add(1)
}

// handlePacket decodes one datagram and returns the encoded reply and where
// to send it (nil: no reply).
func (s *Server) handlePacket(ctx context.Context, b []byte, port int, peer net.Addr) ([]byte, net.Addr) {
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		s.stats.malformed.Add(1)
		s.log.Debug("dhcpsrv: malformed packet", "from", peer, "err", err)
		return nil, nil
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
		s.stats.malformed.Add(1)
		s.log.Debug("dhcpsrv: not an Ethernet BOOTREQUEST", "from", peer)
		return nil, nil
	}
	resp := s.reply(ctx, req, port)
	if resp == nil {
		return nil, nil
	}
	return resp.ToBytes(), s.destination(req, resp, port, peer)
}

// destination implements RFC 2131 section 4.1 (without ARP injection:
// clients without an address are answered by broadcast).
func (s *Server) destination(req, resp *dhcpv4.DHCPv4, port int, peer net.Addr) net.Addr {
	if port == PXEPort {
		return peer
	}
	if gi := req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: ServerPort}
	}
	if ci := req.ClientIPAddr; ci != nil && !ci.IsUnspecified() && resp.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ci, Port: ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: ClientPort}
}

// Reply handles one request as if it arrived on port 67 and returns the
// reply to send, or nil when none is due. It is what Serve does per packet,
// without the socket: handy for tests and for embedding.
func (s *Server) Reply(ctx context.Context, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	if err := s.prepare(); err != nil {
		s.log.Error("dhcpsrv: not configured", "err", err)
		return nil
	}
	return s.reply(ctx, req, ServerPort)
}

func (s *Server) reply(ctx context.Context, req *dhcpv4.DHCPv4, port int) *dhcpv4.DHCPv4 {
	mac, err := hwaddr.FromHardwareAddr(req.ClientHWAddr)
	if err != nil || mac.IsZero() {
		s.stats.malformed.Add(1)
		return nil
	}
	var resp *dhcpv4.DHCPv4
	if s.ProxyDHCP {
		resp = s.proxy(ctx, req, mac, port)
	} else if port != PXEPort {
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			s.stats.discovers.Add(1)
			resp = s.discover(ctx, req, mac)
		case dhcpv4.MessageTypeRequest:
			s.stats.requests.Add(1)
			resp = s.request(ctx, req, mac)
		case dhcpv4.MessageTypeRelease:
			s.stats.releases.Add(1)
			s.release(ctx, req, mac)
		case dhcpv4.MessageTypeDecline:
			s.stats.declines.Add(1)
			s.decline(ctx, req, mac)
		case dhcpv4.MessageTypeInform:
			s.stats.informs.Add(1)
			resp = s.inform(ctx, req, mac)
		default:
			s.stats.dropped.Add(1)
		}
	}
	if resp == nil {
		return nil
	}
	if s.Handler != nil {
		s.Handler.ServeDHCP(ctx, req, resp)
	}
	switch resp.MessageType() {
	case dhcpv4.MessageTypeOffer:
		s.stats.offers.Add(1)
	case dhcpv4.MessageTypeAck:
		s.stats.acks.Add(1)
	case dhcpv4.MessageTypeNak:
		s.stats.naks.Add(1)
	}
	return resp
}

// newReply builds a reply to req like dhcpv4.NewReplyFromRequest (xid,
// flags, chaddr, giaddr, options 82 and 61 copied) without generating a
// random transaction id first.
func newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, yiaddr netip.Addr) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientHWAddr:  req.ClientHWAddr,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       dhcpv4.Options{},
	}
	if gi := req.GatewayIPAddr.To4(); gi != nil {
		d.GatewayIPAddr = gi
	}
	if yiaddr.Is4() {
		d.YourIPAddr = yiaddr.AsSlice()
	}
	d.Options.Update(dhcpv4.OptMessageType(mt))
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.Options.Get(code); v != nil {
			d.Options.Update(dhcpv4.OptGeneric(code, v))
		}
	}
	return d
}

func ipOf(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil && !v4.IsUnspecified() {
		a, _ := netip.AddrFromSlice(v4)
		return a
	}
	return netip.Addr{}
}

// subnetFor picks the subnet: the relay's (giaddr) or the local one.
func (s *Server) subnetFor(req *dhcpv4.DHCPv4) *subnet {
	if gi := ipOf(req.GatewayIPAddr); gi.IsValid() {
		for _, sn := range s.subnets {
			if sn.Prefix.Contains(gi) {
				return sn
			}
		}
		return nil
	}
	for _, sn := range s.subnets {
		if s.sid.IsValid() && sn.Prefix.Contains(s.sid) {
			return sn
		}
	}
	if len(s.subnets) > 0 {
		return s.subnets[0]
	}
	return nil
}

func (sn *subnet) inRanges(ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	v := u32(ip)
	for _, r := range sn.ranges {
		if v >= r.from && v <= r.to {
			return true
		}
	}
	return false
}

func (sn *subnet) nth(i uint64) netip.Addr {
	for _, r := range sn.ranges {
		n := uint64(r.to-r.from) + 1
		if i < n {
			return addrU32(r.from + uint32(i))
		}
		i -= n
	}
	return netip.Addr{}
}

func (sn *subnet) leaseTime() time.Duration {
	if sn.LeaseTime > 0 {
		return sn.LeaseTime
	}
	return DefaultLeaseTime
}

// errReservations marks an error of the ReservationSource (or of its
// ReservedIPs), counted apart from lease store errors.
var errReservations = errors.New("reservation source")

// reservation asks the ReservationSource for mac's reservation and keeps
// it when its address is an IPv4 address of sn.
func (s *Server) reservation(ctx context.Context, mac hwaddr.MAC, sn *subnet) (Reservation, bool, error) {
	if s.Reservations == nil {
		return Reservation{}, false, nil
	}
	r, ok, err := s.Reservations.Reservation(ctx, mac)
	if err != nil {
		return Reservation{}, false, fmt.Errorf("%w: %w", errReservations, err)
	}
	if !ok || !r.IP.Is4() || !sn.Prefix.Contains(r.IP) {
		return Reservation{}, false, nil
	}
	return r, true, nil
}

// sourceFailed counts and logs a failure of the lease store or of the
// reservation source; the packet it happened on is dropped (no answer:
// the client retries).
func (s *Server) sourceFailed(req *dhcpv4.DHCPv4, mac hwaddr.MAC, err error) {
	if errors.Is(err, errReservations) {
		s.stats.reservationErrors.Add(1)
		s.log.Error("dhcpsrv: reservation lookup failed; packet dropped", "type", req.MessageType().String(), "mac", mac, "err", err)
		return
	}
	s.stats.storeErrors.Add(1)
	s.log.Error("dhcpsrv: lease store failed; packet dropped", "type", req.MessageType().String(), "mac", mac, "err", err)
}

// freeFor reports whether ip may be given to mac now; s.mu held.
func (s *Server) freeFor(ctx context.Context, ip netip.Addr, mac hwaddr.MAC, now time.Time) (bool, error) {
	if o, ok := s.offers[ip]; ok && o.mac != mac && now.Before(o.until) {
		return false, nil
	}
	return s.freeIgnoringOffer(ctx, ip, mac, now)
}

// pick chooses the address to offer mac in sn (r is its reservation when
// reserved); s.mu held. An error of the lease store or the reservation
// source ends the search: the server does not guess.
func (s *Server) pick(ctx context.Context, mac hwaddr.MAC, sn *subnet, r Reservation, reserved bool, requested netip.Addr, now time.Time) (netip.Addr, bool, error) {
	if reserved {
		free, err := s.freeFor(ctx, r.IP, mac, now)
		return r.IP, free, err
	}
	l, err := s.store.ByMAC(ctx, mac)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return netip.Addr{}, false, err
	}
	// In order: its previous address, the one already offered to it (by
	// this server, or claimed for it in a shared store), the one it asks
	// for (invalid entries are skipped).
	var candidates [4]netip.Addr
	if err == nil {
		candidates[0] = l.IP
	}
	candidates[1] = s.offerByMAC[mac]
	candidates[2] = s.claimedElsewhere(ctx, mac)
	candidates[3] = requested
	for _, ip := range candidates {
		if !sn.inRanges(ip) {
			continue
		}
		free, err := s.freeFor(ctx, ip, mac, now)
		if err != nil {
			return netip.Addr{}, false, err
		}
		if free {
			return ip, true, nil
		}
	}
	start := sn.cursor
	_, shared := s.store.(OfferClaimer)
	if shared && sn.size > 0 {
		// Servers sharing a pool search it from a place the client's MAC
		// chooses: the servers that see one DISCOVER offer it the same
		// address (one claim, renewed), while different clients spread
		// over the pool instead of racing for its first free address.
		start = macHash(mac) % sn.size
	}
	for i := range sn.size {
		k := (start + i) % sn.size
		ip := sn.nth(k)
		free, err := s.freeFor(ctx, ip, mac, now)
		if err != nil {
			return netip.Addr{}, false, err
		}
		if free {
			if !shared {
				sn.cursor = k + 1
			}
			return ip, true, nil
		}
	}
	if shared {
		// Another client's offer is claimed in the shared store until
		// its hold time passes: nothing to reclaim before that.
		return netip.Addr{}, false, nil
	}
	return s.reclaimOffer(ctx, mac, sn, now)
}

// reclaimOffer takes back, for mac, the pool address of sn whose pending
// offer to another client is the oldest (soonest to expire), provided
// nothing but that offer keeps it from mac: no lease of another client,
// no decline quarantine, no reservation. It is the last resort of an
// exhausted pool, so clients that DISCOVER and never REQUEST cannot
// starve real ones; s.mu held.
func (s *Server) reclaimOffer(ctx context.Context, mac hwaddr.MAC, sn *subnet, now time.Time) (netip.Addr, bool, error) {
	var (
		best netip.Addr
		bo   offer
	)
	for ip, o := range s.offers {
		if o.mac == mac || !sn.inRanges(ip) {
			continue
		}
		if best.IsValid() && (o.until.After(bo.until) || o.until.Equal(bo.until) && best.Less(ip)) {
			continue
		}
		free, err := s.freeIgnoringOffer(ctx, ip, mac, now)
		if err != nil {
			return netip.Addr{}, false, err
		}
		if !free {
			continue
		}
		best, bo = ip, o
	}
	if !best.IsValid() {
		return netip.Addr{}, false, nil
	}
	delete(s.offers, best)
	if s.offerByMAC[bo.mac] == best {
		delete(s.offerByMAC, bo.mac)
	}
	s.stats.offersReclaimed.Add(1)
	s.log.Info("dhcpsrv: pool exhausted; reclaimed an address offered to a client that has not requested it",
		"ip", best, "from", bo.mac, "for", mac)
	return best, true, nil
}

// freeIgnoringOffer is freeFor without the pending-offer check; s.mu held.
func (s *Server) freeIgnoringOffer(ctx context.Context, ip netip.Addr, mac hwaddr.MAC, now time.Time) (bool, error) {
	if rip, ok := s.Reservations.(ReservedIPs); ok {
		owner, ok, err := rip.ReservedFor(ctx, ip)
		if err != nil {
			return false, fmt.Errorf("%w: %w", errReservations, err)
		}
		if ok && owner != mac {
			return false, nil
		}
	}
	l, err := s.store.Get(ctx, ip)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return !l.blocks(mac, now), nil
}

func (s *Server) discover(ctx context.Context, req *dhcpv4.DHCPv4, mac hwaddr.MAC) *dhcpv4.DHCPv4 {
	now := s.now()
	ci := ParseClientInfo(req)
	ev := Event{Time: now, MAC: mac, Arch: ci.Arch, UUID: ci.UUID, VendorClass: ci.VendorClass, Relay: ipOf(req.GatewayIPAddr)}
	sn := s.subnetFor(req)
	if sn == nil {
		s.stats.dropped.Add(1)
		s.log.Info("dhcpsrv: no subnet for request", "mac", mac, "giaddr", req.GatewayIPAddr)
		s.hookDiscover(ev)
		return nil
	}
	r, reserved, err := s.reservation(ctx, mac, sn)
	if err != nil {
		s.sourceFailed(req, mac, err)
		s.hookDiscover(ev)
		return nil
	}
	var (
		ip netip.Addr
		ok bool
	)
	for attempt := 1; ; attempt++ {
		s.mu.Lock()
		if len(s.offers) >= s.sweepAt {
			s.sweepOffers(now)
		}
		ip, ok, err = s.pick(ctx, mac, sn, r, reserved, ipOf(req.RequestedIPAddress()), now)
		if ok && err == nil {
			if old, had := s.offerByMAC[mac]; had && old != ip {
				delete(s.offers, old)
			}
			s.offers[ip] = offer{mac: mac, until: now.Add(s.offerTime()), ci: ci}
			s.offerByMAC[mac] = ip
		}
		s.mu.Unlock()
		if err != nil || !ok {
			break
		}
		// A shared store: claim the address before the OFFER leaves
		// (claim.go), outside s.mu so one slow claim holds up no
		// other client.
		if ok, err = s.claimOffered(ctx, ip, mac, now); err != nil || ok || attempt == maxClaimAttempts {
			break
		}
	}
	if err != nil {
		s.sourceFailed(req, mac, err)
		s.hookDiscover(ev)
		return nil
	}
	if !ok {
		s.stats.exhausted.Add(1)
		s.log.Warn("dhcpsrv: no free address", "mac", mac, "subnet", sn.Prefix)
		s.hookDiscover(ev)
		return nil
	}
	resp := newReply(req, dhcpv4.MessageTypeOffer, ip)
	hostname := s.leaseHostname(req, mac, r, reserved, slog.LevelDebug)
	s.addNetworkOptions(resp, sn, hostname, true)
	ev.Offered = ip
	ev.BootFile = s.addBootOptions(ctx, mac, req, resp, ci, false)
	s.hookDiscover(ev)
	return resp
}

// sweepOffers forgets expired offers (clients that never sent a REQUEST),
// so a DISCOVER flood cannot grow memory without bound; s.mu held.
func (s *Server) sweepOffers(now time.Time) {
	for ip, o := range s.offers {
		if !now.Before(o.until) {
			delete(s.offers, ip)
			if s.offerByMAC[o.mac] == ip {
				delete(s.offerByMAC, o.mac)
			}
		}
	}
	s.sweepAt = 2*len(s.offers) + 1024
}

func (s *Server) hookDiscover(ev Event) {
	if s.OnDiscover != nil {
		s.OnDiscover(ev)
	}
}

func (s *Server) offerTime() time.Duration {
	if s.OfferTime > 0 {
		return s.OfferTime
	}
	return DefaultOfferTime
}

func (s *Server) nak(req *dhcpv4.DHCPv4, msg string) *dhcpv4.DHCPv4 {
	resp := newReply(req, dhcpv4.MessageTypeNak, netip.Addr{})
	resp.Options.Update(dhcpv4.OptServerIdentifier(s.sid.AsSlice()))
	resp.Options.Update(dhcpv4.OptMessage(msg))
	if ipOf(req.GatewayIPAddr).IsValid() {
		resp.SetBroadcast()
	}
	return resp
}

func (s *Server) request(ctx context.Context, req *dhcpv4.DHCPv4, mac hwaddr.MAC) *dhcpv4.DHCPv4 {
	now := s.now()
	if sid := ipOf(req.ServerIdentifier()); sid.IsValid() && s.sid.IsValid() && sid != s.sid {
		// The client chose another server's offer.
		s.mu.Lock()
		if ip, ok := s.offerByMAC[mac]; ok {
			delete(s.offers, ip)
			delete(s.offerByMAC, mac)
		}
		s.mu.Unlock()
		return nil
	}
	ip := ipOf(req.RequestedIPAddress())
	if !ip.IsValid() {
		ip = ipOf(req.ClientIPAddr)
	}
	sn := s.subnetFor(req)
	if sn == nil {
		s.stats.dropped.Add(1)
		return nil
	}
	if !ip.IsValid() {
		return s.nak(req, "no address requested")
	}
	r, reserved, err := s.reservation(ctx, mac, sn)
	if err != nil {
		s.sourceFailed(req, mac, err)
		return nil
	}
	switch {
	case reserved && r.IP != ip:
		return s.nak(req, "address reserved elsewhere for this client")
	case !reserved && !sn.inRanges(ip):
		return s.nak(req, "address not in this server's pool for the client's network")
	}
	ci := ParseClientInfo(req)
	if !ci.NetBoot() {
		// Some clients send options 93/60/97 only in the DISCOVER.
		s.mu.Lock()
		if o, ok := s.offers[ip]; ok && o.mac == mac {
			ci = o.ci
		}
		s.mu.Unlock()
	}
	hostname := s.leaseHostname(req, mac, r, reserved, slog.LevelWarn)
	l, err := s.commit(ctx, mac, ip, sn, ci, hostname, now)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return s.nak(req, "address in use")
		}
		s.sourceFailed(req, mac, fmt.Errorf("store lease of %s: %w", ip, err))
		return nil // no ACK without a durable lease; the client retries
	}
	resp := newReply(req, dhcpv4.MessageTypeAck, ip)
	s.addNetworkOptions(resp, sn, hostname, true)
	s.addBootOptions(ctx, mac, req, resp, ci, false)
	if s.OnLease != nil {
		s.OnLease(l)
	}
	return resp
}

// commit durably binds ip to mac, retrying a lost compare-and-swap race.
func (s *Server) commit(ctx context.Context, mac hwaddr.MAC, ip netip.Addr, sn *subnet, ci ClientInfo, hostname string, now time.Time) (Lease, error) {
	prev, perr := s.store.ByMAC(ctx, mac)
	if perr != nil && !errors.Is(perr, ErrNotFound) {
		return Lease{}, perr
	}
	// The architecture is the machine's, not the request's: the booted
	// system's DHCP client sends no option 93, and keeps what the
	// firmware reported.
	arch := ci.Arch
	if arch == ArchUnknown && perr == nil && prev.MAC == mac {
		arch = prev.Arch
	}
	var err error
	for range 3 {
		s.mu.Lock()
		free, ferr := s.freeFor(ctx, ip, mac, now)
		s.mu.Unlock()
		if ferr != nil {
			return Lease{}, ferr
		}
		if !free {
			return Lease{}, fmt.Errorf("%w: %s is held by another client", ErrConflict, ip)
		}
		var cur Lease
		cur, err = s.store.Get(ctx, ip)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Lease{}, err
		}
		if cur.blocks(mac, now) {
			return Lease{}, fmt.Errorf("%w: %s is held by another client", ErrConflict, ip)
		}
		var l Lease
		l, err = s.store.CompareAndSwap(ctx, cur.Rev, Lease{IP: ip, MAC: mac, Hostname: hostname, UUID: ci.UUID,
			Arch: arch, Expires: now.Add(sn.leaseTime()), State: StateBound})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Lease{}, err
		}
		s.mu.Lock()
		if o, ok := s.offers[ip]; ok && o.mac == mac {
			delete(s.offers, ip)
		}
		if s.offerByMAC[mac] == ip {
			delete(s.offerByMAC, mac)
		}
		s.mu.Unlock()
		if perr == nil && prev.IP != ip && prev.MAC == mac {
			// The client moved: free its old address.
			_ = s.store.CompareAndDelete(ctx, prev.IP, prev.Rev)
		}
		return l, nil
	}
	return Lease{}, err
}

func (s *Server) release(ctx context.Context, req *dhcpv4.DHCPv4, mac hwaddr.MAC) {
	l, ok := s.changeLease(ctx, req, mac, ipOf(req.ClientIPAddr), "release", func(cur Lease) (Lease, bool) {
		if cur.State != StateBound {
			return cur, false
		}
		cur.State, cur.Expires = StateReleased, s.now()
		return cur, true
	})
	if ok && s.OnRelease != nil {
		s.OnRelease(s.checkStored(l))
	}
}

func (s *Server) decline(ctx context.Context, req *dhcpv4.DHCPv4, mac hwaddr.MAC) {
	d := s.DeclineTime
	if d <= 0 {
		d = DefaultDeclineTime
	}
	l, ok := s.changeLease(ctx, req, mac, ipOf(req.RequestedIPAddress()), "decline", func(cur Lease) (Lease, bool) {
		return Lease{IP: cur.IP, State: StateDeclined, Expires: s.now().Add(d)}, true
	})
	if ok {
		s.log.Warn("dhcpsrv: address declined by client, quarantined", "mac", mac, "ip", l.IP, "for", d)
	}
}

// changeLease applies a client's RELEASE or DECLINE (what) to the lease on
// ip: only when the lease exists and is held by mac, and change (given the
// stored lease) says there is something to store. It reports the stored
// lease; a store failure is counted and logged, and a lost race (another
// write since the read) is dropped, as the client's message would be.
func (s *Server) changeLease(ctx context.Context, req *dhcpv4.DHCPv4, mac hwaddr.MAC, ip netip.Addr, what string, change func(Lease) (Lease, bool)) (Lease, bool) {
	if !ip.IsValid() {
		return Lease{}, false
	}
	cur, err := s.store.Get(ctx, ip)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.sourceFailed(req, mac, err)
		}
		return Lease{}, false
	}
	if cur.MAC != mac {
		return Lease{}, false
	}
	next, ok := change(cur)
	if !ok {
		return Lease{}, false
	}
	l, err := s.store.CompareAndSwap(ctx, cur.Rev, next)
	if err != nil {
		if !errors.Is(err, ErrConflict) {
			s.stats.storeErrors.Add(1)
		}
		s.log.Warn("dhcpsrv: "+what, "mac", mac, "ip", ip, "err", err)
		return Lease{}, false
	}
	return l, true
}

func (s *Server) inform(ctx context.Context, req *dhcpv4.DHCPv4, mac hwaddr.MAC) *dhcpv4.DHCPv4 {
	sn := s.subnetFor(req)
	if sn == nil {
		return nil
	}
	resp := newReply(req, dhcpv4.MessageTypeAck, netip.Addr{})
	s.addNetworkOptions(resp, sn, "", false)
	s.addBootOptions(ctx, mac, req, resp, ParseClientInfo(req), false)
	return resp
}

func (s *Server) addNetworkOptions(resp *dhcpv4.DHCPv4, sn *subnet, hostname string, lease bool) {
	o := resp.Options
	o.Update(dhcpv4.OptServerIdentifier(s.sid.AsSlice()))
	o.Update(dhcpv4.OptSubnetMask(net.CIDRMask(sn.Prefix.Bits(), 32)))
	if sn.Router.Is4() {
		o.Update(dhcpv4.OptRouter(sn.Router.AsSlice()))
	}
	if len(sn.DNS) > 0 {
		ips := make([]net.IP, 0, len(sn.DNS))
		for _, d := range sn.DNS {
			ips = append(ips, d.AsSlice())
		}
		o.Update(dhcpv4.OptDNS(ips...))
	}
	if sn.Domain != "" {
		o.Update(dhcpv4.OptDomainName(sn.Domain))
	}
	if hostname != "" {
		o.Update(dhcpv4.OptHostName(hostname))
	}
	if lease {
		lt := sn.leaseTime()
		o.Update(dhcpv4.OptIPAddressLeaseTime(lt))
		o.Update(dhcpv4.OptRenewTimeValue(lt / 2))
		o.Update(dhcpv4.OptRebindingTimeValue(lt * 7 / 8))
	}
}

// addBootOptions sets siaddr, file, options 66/67/60/97 (and 43 for
// proxyDHCP) for a network-booting client; it returns the boot file.
func (s *Server) addBootOptions(ctx context.Context, mac hwaddr.MAC, req, resp *dhcpv4.DHCPv4, ci ClientInfo, proxy bool) string {
	if !ci.NetBoot() {
		return ""
	}
	file, isHTTP, ok := s.Boot.bootFileFor(ctx, mac, ci)
	if !ok {
		return ""
	}
	next := s.NextServer
	if !next.Is4() {
		next = s.sid
	}
	o := resp.Options
	resp.BootFileName = file
	o.Update(dhcpv4.OptBootFileName(file))
	if isHTTP {
		o.Update(dhcpv4.OptClassIdentifier("HTTPClient"))
	} else {
		if next.Is4() {
			resp.ServerIPAddr = next.AsSlice()
			o.Update(dhcpv4.OptTFTPServerName(next.String()))
		}
		if ci.PXE {
			o.Update(dhcpv4.OptClassIdentifier("PXEClient"))
		}
	}
	if v := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); len(v) > 0 {
		o.Update(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, v))
	}
	if ci.PXE && !isHTTP {
		// PXE vendor options: discovery control = 8 (use the boot file
		// in this packet, no boot server discovery). Without them UEFI
		// (EDK2) classifies an offer carrying option 60 "PXEClient" as a
		// BINL offer, asks port 4011 for the boot file and gives up with
		// PXE-E16 "No valid offer received".
		o.Update(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
	}
	if ci.IPXE && !proxy {
		// iPXE "no-pxedhcp" (175.176 = 1): do not wait for proxyDHCP.
		o.Update(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{176, 1, 1}))
	}
	return file
}

// proxy answers PXE clients in proxyDHCP mode: DISCOVER on port 67 gets an
// OFFER without address, REQUEST on port 4011 an ACK, both with boot options.
func (s *Server) proxy(ctx context.Context, req *dhcpv4.DHCPv4, mac hwaddr.MAC, port int) *dhcpv4.DHCPv4 {
	ci := ParseClientInfo(req)
	if !ci.PXE && !ci.HTTPClient {
		s.stats.dropped.Add(1)
		return nil
	}
	var mt dhcpv4.MessageType
	switch {
	case port != PXEPort && req.MessageType() == dhcpv4.MessageTypeDiscover:
		s.stats.discovers.Add(1)
		mt = dhcpv4.MessageTypeOffer
	case port == PXEPort && (req.MessageType() == dhcpv4.MessageTypeRequest || req.MessageType() == dhcpv4.MessageTypeInform):
		s.stats.requests.Add(1)
		mt = dhcpv4.MessageTypeAck
	default:
		s.stats.dropped.Add(1)
		return nil
	}
	resp := newReply(req, mt, netip.Addr{})
	resp.Options.Update(dhcpv4.OptServerIdentifier(s.sid.AsSlice()))
	file := s.addBootOptions(ctx, mac, req, resp, ci, true)
	if mt == dhcpv4.MessageTypeOffer {
		s.hookDiscover(Event{Time: s.now(), MAC: mac, Arch: ci.Arch, UUID: ci.UUID, VendorClass: ci.VendorClass,
			Relay: ipOf(req.GatewayIPAddr), BootFile: file})
	}
	if file == "" {
		return nil
	}
	return resp
}
