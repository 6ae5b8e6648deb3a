package dnssrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// config is the Server's fields, checked and compiled once.
type config struct {
	log       *slog.Logger
	zones     map[string]*zone // apex → zone, forward and reverse
	records   RecordSource
	hostname  string
	allow     []netip.Prefix
	ttl       uint32
	udpSize   int
	limiter   *limiter // nil: no limit
	fwd       *forwarder
	fwdSlots  semaphore
	recursion bool

	tcpIdle         time.Duration
	maxTCPConns     int
	maxTCPPerClient int // 0: no per-client bound
}

type zone struct {
	apex    string
	reverse bool
	soa     *dns.SOA
	ns      *dns.NS
}

type semaphore chan struct{}

func (s semaphore) TryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s semaphore) Release() { <-s }

func (s *Server) setup() error {
	s.once.Do(func() { s.cfg, s.err = s.compile() })
	return s.err
}

func (s *Server) compile() (*config, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...)))
	}
	c := &config{
		log:      s.Logger,
		zones:    map[string]*zone{},
		records:  s.Records,
		ttl:      uint32(DefaultTTL / time.Second),
		udpSize:  DefaultUDPSize,
		fwdSlots: make(semaphore, DefaultMaxForwards),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.records == nil {
		c.records = Multi()
	}
	if s.Addr != "" {
		if _, port, err := net.SplitHostPort(s.Addr); err != nil {
			bad("Addr", "%q: %v", s.Addr, err)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			bad("Addr", "%q: port %q is not a number from 0 to 65535", s.Addr, port)
		}
	}
	switch {
	case s.TTL < 0:
		bad("TTL", "negative (%v)", s.TTL)
	case s.TTL > 0:
		c.ttl = uint32(max(1, s.TTL/time.Second))
	}
	c.tcpIdle, c.maxTCPConns, c.maxTCPPerClient = DefaultTCPIdleTimeout, DefaultMaxTCPConns, DefaultMaxTCPConnsPerClient
	switch {
	case s.TCPIdleTimeout < 0:
		bad("TCPIdleTimeout", "negative (%v)", s.TCPIdleTimeout)
	case s.TCPIdleTimeout > 0:
		c.tcpIdle = s.TCPIdleTimeout
	}
	switch {
	case s.MaxTCPConns < 0:
		bad("MaxTCPConns", "negative (%d)", s.MaxTCPConns)
	case s.MaxTCPConns > 0:
		c.maxTCPConns = s.MaxTCPConns
	}
	switch {
	case s.MaxTCPConnsPerClient < 0:
		c.maxTCPPerClient = 0
	case s.MaxTCPConnsPerClient > 0:
		c.maxTCPPerClient = s.MaxTCPConnsPerClient
	}
	if s.UDPSize != 0 {
		if s.UDPSize < dns.MinMsgSize || s.UDPSize > dns.MaxMsgSize {
			bad("UDPSize", "%d outside [512, 65535]", s.UDPSize)
		} else {
			c.udpSize = s.UDPSize
		}
	}
	if s.UpstreamTimeout < 0 {
		bad("UpstreamTimeout", "negative (%v)", s.UpstreamTimeout)
	}
	var forward []string
	for i, z := range s.Zones {
		apex := CanonicalName(z)
		if _, ok := dns.IsDomainName(apex); !ok || apex == "." {
			bad(fmt.Sprintf("Zones[%d]", i), "%q is not a zone name", z)
			continue
		}
		forward = append(forward, apex)
	}
	c.hostname = CanonicalName(s.Hostname)
	if s.Hostname == "" {
		c.hostname = "ns.lab."
		if len(forward) > 0 {
			c.hostname = "ns." + forward[0]
		}
	} else if _, ok := dns.IsDomainName(c.hostname); !ok {
		bad("Hostname", "%q is not a domain name", s.Hostname)
	}
	serial := uint32(time.Now().Unix())
	mbox := "hostmaster." + c.hostname
	if i := strings.IndexByte(c.hostname, '.'); i >= 0 && i+1 < len(c.hostname) {
		mbox = "hostmaster." + c.hostname[i+1:]
	}
	add := func(apex string, reverse bool) {
		c.zones[apex] = &zone{
			apex:    apex,
			reverse: reverse,
			soa: &dns.SOA{
				Hdr:     dns.RR_Header{Name: apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: c.ttl},
				Ns:      c.hostname,
				Mbox:    mbox,
				Serial:  serial,
				Refresh: 3600, Retry: 600, Expire: 86400,
				Minttl: c.ttl,
			},
			ns: &dns.NS{
				Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: c.ttl},
				Ns:  c.hostname,
			},
		}
	}
	for _, apex := range forward {
		add(apex, false)
	}
	for i, p := range s.ReverseFor {
		if !p.IsValid() {
			bad(fmt.Sprintf("ReverseFor[%d]", i), "%v is not a network", p)
			continue
		}
		for _, apex := range ReverseZones(p) {
			add(apex, true)
		}
	}
	c.allow = slices.Clone(s.Allow)
	if len(c.allow) == 0 {
		c.allow = DefaultAllow(s.ReverseFor)
	}
	for i, p := range c.allow {
		if !p.IsValid() {
			if len(s.Allow) > 0 {
				bad(fmt.Sprintf("Allow[%d]", i), "%v is not a network", p)
			}
			continue
		}
		c.allow[i] = p.Masked()
	}
	switch {
	case s.RateLimit == 0:
		c.limiter = newLimiter(DefaultRateLimit)
	case s.RateLimit > 0:
		c.limiter = newLimiter(s.RateLimit)
	}
	if len(s.Upstreams) > 0 {
		f, err := newForwarder(s.Upstreams, s.UpstreamTimeout, s.CacheSize, c.udpSize)
		if err != nil {
			errs = append(errs, err)
		}
		c.fwd = f
		c.recursion = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// DefaultAllow is the client list a Server with an empty Allow serves:
// loopback (127.0.0.0/8, ::1) plus the lab subnets reverseFor (its
// ReverseFor). A caller that adds to the default (another management
// network) starts from it:
//
//	srv.Allow = append(dnssrv.DefaultAllow(srv.ReverseFor), mgmt)
func DefaultAllow(reverseFor []netip.Prefix) []netip.Prefix {
	return append([]netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	}, reverseFor...)
}

// ReverseZones returns the reverse-lookup zone apexes covering exactly
// prefix p: in-addr.arpa zones on octet boundaries for IPv4, ip6.arpa zones
// on nibble boundaries for IPv6. 172.22.10.0/24 gives
// ["10.22.172.in-addr.arpa."]; 172.22.10.0/23 gives the two /24 zones.
func ReverseZones(p netip.Prefix) []string {
	p = p.Masked()
	bits, total, unit := p.Bits(), p.Addr().BitLen(), 8
	suffix := "in-addr.arpa."
	if p.Addr().Is6() {
		unit, suffix = 4, "ip6.arpa."
	}
	zbits := (bits + unit - 1) / unit * unit
	count := 1 << (zbits - bits)
	out := make([]string, 0, count)
	base := p.Addr().AsSlice()
	for i := range count {
		a := append([]byte(nil), base...)
		// add i << (total - zbits) to the address
		carry := uint64(i) << ((total - zbits) % 8)
		for j := (total-zbits)/8 + 1; j <= len(a) && carry > 0; j++ {
			v := uint64(a[len(a)-j]) + carry
			a[len(a)-j] = byte(v)
			carry = v >> 8
		}
		var b strings.Builder
		if unit == 8 {
			for k := zbits/8 - 1; k >= 0; k-- {
				b.WriteString(strconv.Itoa(int(a[k])))
				b.WriteByte('.')
			}
		} else {
			for k := zbits/4 - 1; k >= 0; k-- {
				nib := a[k/2] >> 4
				if k%2 == 1 {
					nib = a[k/2] & 0xf
				}
				b.WriteString(strconv.FormatUint(uint64(nib), 16))
				b.WriteByte('.')
			}
		}
		b.WriteString(suffix)
		out = append(out, b.String())
	}
	return out
}

// parseReverse parses the labels of a reverse name in front of
// "in-addr.arpa." or "ip6.arpa.". It returns the address when the name is a
// complete one, partial=true for a valid name above a host (a zone cut or an
// empty non-terminal), ok=false for anything else.
func parseReverse(name string) (addr netip.Addr, partial, ok bool) {
	var v6 bool
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa."):
		name = name[:len(name)-len(".in-addr.arpa.")]
	case strings.HasSuffix(name, ".ip6.arpa."):
		name, v6 = name[:len(name)-len(".ip6.arpa.")], true
	case name == "in-addr.arpa." || name == "ip6.arpa.":
		return netip.Addr{}, true, true
	default:
		return netip.Addr{}, false, false
	}
	labels := strings.Split(name, ".")
	if v6 {
		if len(labels) > 32 {
			return netip.Addr{}, false, false
		}
		var a [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}, false, false
			}
			n, err := strconv.ParseUint(l, 16, 8)
			if err != nil {
				return netip.Addr{}, false, false
			}
			k := 31 - i - (32 - len(labels)) // nibble index from the left
			if k%2 == 0 {
				a[k/2] |= byte(n) << 4
			} else {
				a[k/2] |= byte(n)
			}
		}
		if len(labels) < 32 {
			return netip.Addr{}, true, true
		}
		return netip.AddrFrom16(a), false, true
	}
	if len(labels) > 4 {
		return netip.Addr{}, false, false
	}
	var a [4]byte
	for i, l := range labels {
		if l == "" || len(l) > 3 || (len(l) > 1 && l[0] == '0') {
			return netip.Addr{}, false, false
		}
		n, err := strconv.ParseUint(l, 10, 8)
		if err != nil {
			return netip.Addr{}, false, false
		}
		a[len(labels)-1-i] = byte(n)
	}
	if len(labels) < 4 {
		return netip.Addr{}, true, true
	}
	return netip.AddrFrom4(a), false, true
}

func (c *config) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range c.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// findZone returns the most specific zone containing name (lower case), or nil.
func (c *config) findZone(name string) *zone {
	if len(c.zones) == 0 {
		return nil
	}
	for i := 0; i < len(name); {
		if z, ok := c.zones[name[i:]]; ok {
			return z
		}
		j := strings.IndexByte(name[i:], '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return nil
}

// pending is a query that needs an upstream.
type pending struct {
	req   *dns.Msg
	udp   bool
	limit int
}

// handlePacket turns one received packet into the wire response (appended
// to out), or nil to send nothing, or a pending forward.
func (s *Server) handlePacket(ctx context.Context, in, out []byte, from netip.Addr, udp bool) ([]byte, *pending) {
	c := s.cfg
	if !c.allowed(from) {
		s.stats.denied.Add(1)
		return nil, nil
	}
	req := new(dns.Msg)
	if err := req.Unpack(in); err != nil || req.Response {
		s.stats.malformed.Add(1)
		return nil, nil
	}
	if udp && c.limiter != nil && !from.IsLoopback() {
		switch c.limiter.allow(from, time.Now()) {
		case limitDrop:
			s.stats.rateLimited.Add(1)
			return nil, nil
		case limitSlip:
			s.stats.rateLimited.Add(1)
			m := new(dns.Msg)
			m.SetReply(req)
			m.Truncated = true
			b, _ := m.PackBuffer(out)
			return b, nil
		}
	}
	s.stats.queries.Add(1)
	resp, fwd := s.respond(ctx, req, udp)
	if fwd != nil {
		return nil, fwd
	}
	return s.pack(resp, req, udp, out), nil
}

// udpLimit is the largest UDP response req's sender accepts from us.
func (c *config) udpLimit(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return max(dns.MinMsgSize, min(int(opt.UDPSize()), c.udpSize))
	}
	return dns.MinMsgSize
}

// pack adds EDNS0 to resp when req had it, truncates it for UDP and packs it.
func (s *Server) pack(resp, req *dns.Msg, udp bool, out []byte) []byte {
	if resp == nil {
		return nil
	}
	if opt := req.IsEdns0(); opt != nil && resp.IsEdns0() == nil {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(uint16(s.cfg.udpSize))
		if opt.Do() {
			o.SetDo()
		}
		resp.Extra = append(resp.Extra, o)
	}
	if udp {
		// Truncate also turns compression off when the answer fits without
		// it: packing without a compression map is cheaper.
		resp.Truncate(s.cfg.udpLimit(req))
	} else {
		resp.Compress = true
	}
	b, err := resp.PackBuffer(out)
	if err != nil {
		s.cfg.log.Warn("dns pack", "err", err)
		return nil
	}
	return b
}

// respond answers req locally, or returns it as pending when it needs an
// upstream and no cached answer exists.
func (s *Server) respond(ctx context.Context, req *dns.Msg, udp bool) (*dns.Msg, *pending) {
	c := s.cfg
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = c.recursion
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		m.Question = nil
		return m, nil
	}
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m, nil
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		m.Rcode = dns.RcodeBadVers
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(uint16(c.udpSize))
		m.Extra = append(m.Extra, o)
		return m, nil
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z := c.findZone(name)
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR || (q.Qclass != dns.ClassINET && (z != nil || c.fwd == nil)) {
		s.stats.refused.Add(1)
		m.Rcode = dns.RcodeRefused
		return m, nil
	}
	if z != nil {
		if err := s.authoritative(ctx, m, z, name, q); err != nil {
			return s.recordsFailed(m, q, err), nil
		}
		s.stats.answered.Add(1)
		m.Authoritative = true
		return m, nil
	}
	// PTR for an address outside the lab subnets that Records knows anyway.
	if q.Qtype == dns.TypePTR && q.Qclass == dns.ClassINET {
		if a, partial, ok := parseReverse(name); ok && !partial {
			names, err := c.records.LookupAddr(ctx, a)
			if err != nil {
				return s.recordsFailed(m, q, err), nil
			}
			if len(names) > 0 {
				s.stats.answered.Add(1)
				m.Authoritative = true
				for _, n := range names {
					m.Answer = append(m.Answer, &dns.PTR{Hdr: c.hdr(q.Name, dns.TypePTR), Ptr: n})
				}
				return m, nil
			}
		}
	}
	if c.fwd == nil {
		s.stats.refused.Add(1)
		m.Rcode = dns.RcodeRefused
		return m, nil
	}
	if r := c.fwd.cached(req); r != nil {
		s.stats.cacheHits.Add(1)
		return r, nil
	}
	return nil, &pending{req: req, udp: udp}
}

func (c *config) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: c.ttl}
}

// recordsFailed turns m into the SERVFAIL answer for a query the
// RecordSource could not answer, and counts it.
func (s *Server) recordsFailed(m *dns.Msg, q dns.Question, err error) *dns.Msg {
	s.stats.recordErrors.Add(1)
	s.cfg.log.Warn("dns: record source failed; answered SERVFAIL", "name", q.Name, "type", dns.TypeToString[q.Qtype], "err", err)
	m.Rcode = dns.RcodeServerFailure
	m.Authoritative = false
	m.Answer, m.Ns, m.Extra = nil, nil, nil
	return m
}

// authoritative fills m with the answer for q in zone z. name is q.Name in
// lower case. It returns the RecordSource's error, if any.
func (s *Server) authoritative(ctx context.Context, m *dns.Msg, z *zone, name string, q dns.Question) error {
	c := s.cfg
	exists := name == z.apex
	qt := q.Qtype
	if exists {
		if qt == dns.TypeSOA || qt == dns.TypeANY {
			m.Answer = append(m.Answer, z.soa)
		}
		if qt == dns.TypeNS || qt == dns.TypeANY {
			m.Answer = append(m.Answer, z.ns)
			if c.findZone(c.hostname) != nil {
				m.Extra = append(m.Extra, c.addrRRs(ctx, c.hostname)...)
			}
		}
	}
	if z.reverse {
		a, partial, ok := parseReverse(name)
		switch {
		case !ok:
		case partial:
			exists = true // a zone cut or empty non-terminal above hosts
		default:
			names, err := c.records.LookupAddr(ctx, a)
			if err != nil {
				return err
			}
			exists = exists || len(names) > 0
			if qt == dns.TypePTR || qt == dns.TypeANY {
				for _, n := range names {
					m.Answer = append(m.Answer, &dns.PTR{Hdr: c.hdr(q.Name, dns.TypePTR), Ptr: n})
				}
			}
		}
	} else {
		addrs, err := c.records.LookupHost(ctx, name)
		if err != nil {
			return err
		}
		exists = exists || len(addrs) > 0
		for _, a := range addrs {
			if a.Is4() && (qt == dns.TypeA || qt == dns.TypeANY) {
				m.Answer = append(m.Answer, &dns.A{Hdr: c.hdr(q.Name, dns.TypeA), A: a.AsSlice()})
			} else if a.Is6() && (qt == dns.TypeAAAA || qt == dns.TypeANY) {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: c.hdr(q.Name, dns.TypeAAAA), AAAA: a.AsSlice()})
			}
		}
	}
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, z.soa) // NXDOMAIN or NODATA: SOA for negative caching
	}
	return nil
}

// addrRRs returns the A/AAAA records of name (canonical), for glue; none
// when the RecordSource fails (glue is optional).
func (c *config) addrRRs(ctx context.Context, name string) []dns.RR {
	var out []dns.RR
	addrs, _ := c.records.LookupHost(ctx, name)
	for _, a := range addrs {
		if a.Is4() {
			out = append(out, &dns.A{Hdr: c.hdr(name, dns.TypeA), A: a.AsSlice()})
		} else {
			out = append(out, &dns.AAAA{Hdr: c.hdr(name, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return out
}

// ServeDNS implements dns.Handler, so the Server can be mounted in a
// github.com/miekg/dns server (tests, middleware). Serve and ListenAndServe
// do not use it: they read the sockets themselves. Through ServeDNS the
// Allow list applies but not RateLimit, and malformed packets are handled
// (answered FORMERR) by the miekg/dns server, not counted here.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if err := s.setup(); err != nil {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		w.WriteMsg(m)
		return
	}
	from := addrPortOf(w.RemoteAddr()).Addr()
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	if !s.cfg.allowed(from) {
		s.stats.denied.Add(1)
		return
	}
	s.stats.queries.Add(1)
	resp, fwd := s.respond(context.Background(), req, udp)
	var b []byte
	if fwd != nil {
		b = s.finishForward(context.Background(), fwd, nil)
	} else {
		b = s.pack(resp, req, udp, nil)
	}
	if b != nil {
		w.Write(b)
	}
}
