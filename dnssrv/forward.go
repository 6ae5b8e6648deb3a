package dnssrv

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	maxCacheTTL      = time.Hour
	maxNegativeTTL   = 5 * time.Minute
	maxCachedLen     = 4096 // bytes; bigger answers are not cached, so the cache stays below CacheSize*4 KB
	forwardDeadline  = 5 * time.Second
	defaultDNSPort   = 53
	cacheKeyFlagDO   = 1
	cacheKeyFlagCD   = 2
	cacheKeyFlagNoRD = 4
)

// ErrUpstream is wrapped by errors from exchanges with upstreams.
var ErrUpstream = errors.New("dnssrv: upstream failed")

type forwarder struct {
	upstreams []string
	udp, tcp  *dns.Client
	cache     *cache // nil: disabled
	udpSize   int
}

func newForwarder(ups []string, timeout time.Duration, cacheSize, udpSize int) (*forwarder, error) {
	if timeout <= 0 {
		timeout = DefaultUpstreamTimeout
	}
	f := &forwarder{
		udp:     &dns.Client{Net: "udp", Timeout: timeout, UDPSize: uint16(udpSize)},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
		udpSize: udpSize,
	}
	var errs []error
	for i, u := range ups {
		ap, err := netip.ParseAddrPort(u)
		if err != nil {
			a, err2 := netip.ParseAddr(strings.Trim(u, "[]"))
			if err2 != nil {
				errs = append(errs, fmt.Errorf("%w: Upstreams[%d]: %q is not an IP address or IP:port: %w", ErrConfig, i, u, err))
				continue
			}
			ap = netip.AddrPortFrom(a, defaultDNSPort)
		}
		f.upstreams = append(f.upstreams, ap.String())
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	switch {
	case cacheSize == 0:
		f.cache = newCache(DefaultCacheSize)
	case cacheSize > 0:
		f.cache = newCache(cacheSize)
	}
	return f, nil
}

func cacheKey(req *dns.Msg) string {
	q := req.Question[0]
	var flags byte
	if opt := req.IsEdns0(); opt != nil && opt.Do() {
		flags |= cacheKeyFlagDO
	}
	if req.CheckingDisabled {
		flags |= cacheKeyFlagCD
	}
	if !req.RecursionDesired {
		flags |= cacheKeyFlagNoRD
	}
	return string([]byte{byte(q.Qtype >> 8), byte(q.Qtype), byte(q.Qclass >> 8), byte(q.Qclass), flags}) +
		strings.ToLower(q.Name)
}

// cached returns a reply to req from the cache, or nil.
func (f *forwarder) cached(req *dns.Msg) *dns.Msg {
	if f.cache == nil {
		return nil
	}
	r, age := f.cache.get(cacheKey(req), time.Now())
	if r == nil {
		return nil
	}
	return reply(req, r, age)
}

// reply builds the answer to req from upstream response r (not modified),
// with TTLs reduced by age seconds.
func reply(req, r *dns.Msg, age uint32) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Rcode = r.Rcode
	m.RecursionAvailable = true
	m.AuthenticatedData = r.AuthenticatedData
	cp := func(rrs []dns.RR) []dns.RR {
		var out []dns.RR
		for _, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			rr = dns.Copy(rr)
			h := rr.Header()
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
			out = append(out, rr)
		}
		return out
	}
	m.Answer, m.Ns, m.Extra = cp(r.Answer), cp(r.Ns), cp(r.Extra)
	return m
}

// exchange asks the upstreams in turn; a truncated UDP answer is retried
// over TCP; SERVFAIL and REFUSED move on to the next upstream.
func (f *forwarder) exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.Id = dns.Id()
	q.RecursionDesired = req.RecursionDesired
	q.CheckingDisabled = req.CheckingDisabled
	q.Question = []dns.Question{req.Question[0]}
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	q.SetEdns0(uint16(f.udpSize), do)
	var (
		last    *dns.Msg
		lastErr error
	)
	for _, up := range f.upstreams {
		r, _, err := f.udp.ExchangeContext(ctx, q, up)
		if err == nil && r.Truncated {
			r, _, err = f.tcp.ExchangeContext(ctx, q, up)
		}
		if err != nil {
			lastErr = fmt.Errorf("%w: %s: %w", ErrUpstream, up, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if err := matches(r, q); err != nil {
			lastErr = fmt.Errorf("%w: %s: %w", ErrUpstream, up, err)
			continue
		}
		if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			last = r
			continue
		}
		return r, nil
	}
	if last != nil {
		return last, nil
	}
	return nil, lastErr
}

// matches checks that r is a usable reply to the upstream query q: the same
// ID, a response to a standard query, the same single question, and an
// rcode that fits the header (an extended rcode needs the OPT record, which
// is not forwarded, and answers nothing the server asked).
func matches(r, q *dns.Msg) error {
	switch {
	case r.Id != q.Id:
		return fmt.Errorf("reply ID %d, query ID %d", r.Id, q.Id)
	case !r.Response:
		return errors.New("a query, not a reply (QR not set)")
	case r.Opcode != dns.OpcodeQuery:
		return fmt.Errorf("reply opcode %d", r.Opcode)
	case len(r.Question) != 1 || r.Question[0].Qtype != q.Question[0].Qtype ||
		r.Question[0].Qclass != q.Question[0].Qclass || !strings.EqualFold(r.Question[0].Name, q.Question[0].Name):
		return errors.New("answer to another question")
	case r.Rcode > 0xF:
		return fmt.Errorf("extended rcode %d", r.Rcode)
	}
	// What Unpack accepts does not always pack into something that parses
	// (an SOA with empty rdata, say): the client would get a broken
	// answer, from the cache too.
	b, err := r.Pack()
	if err != nil {
		return fmt.Errorf("reply does not pack again: %w", err)
	}
	if err := new(dns.Msg).Unpack(b); err != nil {
		return fmt.Errorf("reply does not parse once packed again: %w", err)
	}
	return nil
}

// finishForward sends p to the upstreams, caches and packs the answer;
// on failure it answers SERVFAIL.
func (s *Server) finishForward(ctx context.Context, p *pending, out []byte) []byte {
	f := s.cfg.fwd
	ctx, cancel := context.WithTimeout(ctx, forwardDeadline)
	defer cancel()
	s.stats.forwarded.Add(1)
	r, err := f.exchange(ctx, p.req)
	var m *dns.Msg
	if err != nil {
		s.stats.failed.Add(1)
		s.cfg.log.Debug("dns forward failed", "name", p.req.Question[0].Name, "err", err)
		m = new(dns.Msg)
		m.SetRcode(p.req, dns.RcodeServerFailure)
		m.RecursionAvailable = true
	} else {
		if r.Rcode == dns.RcodeServerFailure {
			s.stats.failed.Add(1)
		}
		if f.cache != nil {
			if ttl, ok := cacheTTL(r); ok {
				f.cache.put(cacheKey(p.req), r, ttl, time.Now())
			}
		}
		m = reply(p.req, r, 0)
	}
	return s.pack(m, p.req, p.udp, out)
}

// cacheTTL is how long r may be cached: the smallest TTL in it, capped; for
// negative answers the SOA's negative TTL (RFC 2308). Failures, truncated
// and large answers are not cached.
func cacheTTL(r *dns.Msg) (time.Duration, bool) {
	if r.Truncated || (r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError) || r.Len() > maxCachedLen {
		return 0, false
	}
	negative := r.Rcode == dns.RcodeNameError || len(r.Answer) == 0
	var ttl uint32
	found := false
	consider := func(v uint32) {
		if !found || v < ttl {
			ttl, found = v, true
		}
	}
	if negative {
		for _, rr := range r.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				consider(min(soa.Hdr.Ttl, soa.Minttl))
			}
		}
		if !found {
			return 0, false
		}
		return min(time.Duration(ttl)*time.Second, maxNegativeTTL), ttl > 0
	}
	for _, sec := range [][]dns.RR{r.Answer, r.Ns, r.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype != dns.TypeOPT {
				consider(rr.Header().Ttl)
			}
		}
	}
	return min(time.Duration(ttl)*time.Second, maxCacheTTL), ttl > 0
}

// cache is a small LRU of upstream responses.
type cache struct {
	mu   sync.Mutex
	max  int
	ll   *list.List
	byID map[string]*list.Element
}

type cacheEntry struct {
	key     string
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

func newCache(n int) *cache {
	return &cache{max: n, ll: list.New(), byID: make(map[string]*list.Element)}
}

// get returns the cached message (shared: do not modify) and its age in
// whole seconds.
func (c *cache) get(key string, now time.Time) (*dns.Msg, uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[key]
	if !ok {
		return nil, 0
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.byID, key)
		return nil, 0
	}
	c.ll.MoveToFront(el)
	return e.msg, uint32(now.Sub(e.stored) / time.Second)
}

func (c *cache) put(key string, m *dns.Msg, ttl time.Duration, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[key]; ok {
		c.ll.Remove(el)
		delete(c.byID, key)
	}
	c.byID[key] = c.ll.PushFront(&cacheEntry{key: key, msg: m, stored: now, expires: now.Add(ttl)})
	for c.ll.Len() > c.max {
		el := c.ll.Back()
		c.ll.Remove(el)
		delete(c.byID, el.Value.(*cacheEntry).key)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
