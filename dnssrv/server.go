package dnssrv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/metalboot/metalboot/internal/sockets"
)

// Defaults: what the zero value of the Server field of the same name does.
const (
	// DefaultAddr is the UDP and TCP address Listen and ListenAndServe
	// use when Server.Addr is empty.
	DefaultAddr = ":53"
	// DefaultTTL is the TTL of authoritative answers and of negative answers.
	DefaultTTL = 60 * time.Second
	// DefaultUDPSize is the EDNS0 UDP payload size the server advertises and
	// uses towards upstreams (the DNS flag day 2020 value).
	DefaultUDPSize = 1232
	// DefaultRateLimit is the number of UDP responses per second one client
	// network (an IPv4 /24 or IPv6 /56) may receive.
	DefaultRateLimit = 2000
	// DefaultCacheSize is the number of forwarded answers kept.
	DefaultCacheSize = 4096
	// DefaultUpstreamTimeout bounds one exchange with one upstream.
	DefaultUpstreamTimeout = 2 * time.Second
	// DefaultTCPIdleTimeout closes a TCP connection that has had no query
	// in flight for this long (RFC 7766 asks for an idle timeout "of the
	// order of seconds"). A query must also arrive whole within it.
	DefaultTCPIdleTimeout = 5 * time.Second
	// DefaultMaxTCPConns bounds concurrent TCP connections. When it is
	// reached, the connection idle for longest is closed to make room.
	DefaultMaxTCPConns = 256
	// DefaultMaxTCPConnsPerClient bounds the TCP connections of one client
	// address; beyond it that client's connection idle for longest is
	// closed to make room.
	DefaultMaxTCPConnsPerClient = 32
	// DefaultMaxForwards bounds queries waiting on an upstream at once;
	// beyond it queries needing an upstream are dropped and counted.
	DefaultMaxForwards = 1024
)

// Sentinel errors.
var (
	// ErrConfig wraps every error [Server.Validate] reports (and so every
	// configuration error Listen, Serve and ListenAndServe return).
	ErrConfig = errors.New("dnssrv: invalid configuration")
	// ErrNoListener is returned by Serve when given neither a PacketConn
	// nor a Listener.
	ErrNoListener = errors.New("dnssrv: no packet conn and no listener")
)

// Server is a small DNS server for a lab: authoritative for the lab's zones
// (forward names from Records and the reverse zones of ReverseFor), a
// forwarder with a cache for everything else.
//
// Configure the exported fields, then call ListenAndServe, or Listen and
// Serve; do not change them afterwards. A Server is also a dns.Handler
// (ServeDNS), so it can be mounted in a github.com/miekg/dns server or
// wrapped in middleware. It follows the metalboot server contract (see
// the documentation of package github.com/metalboot/metalboot): Validate
// reports every configuration mistake, Listen binds, Serve serves sockets
// it does not close, the zero value of a field means its DefaultX, a nil
// Logger discards. The zero Server is valid: it answers loopback clients
// on DefaultAddr, knows no names and forwards nothing.
//
// # Amplification
//
// A DNS server reachable from untrusted networks can be abused to reflect
// and amplify traffic towards a spoofed source address. Server therefore
// answers only clients in Allow (by default loopback and the ReverseFor lab
// subnets; queries from elsewhere are dropped silently and counted as
// Denied), never answers malformed packets, and bounds the UDP response rate
// per client network (RateLimit; excess queries are dropped, every second one
// answered with an empty truncated reply so that a real client retries over
// TCP). Setting Allow to 0.0.0.0/0 and ::/0 makes it an open resolver: do that
// only behind a firewall.
type Server struct {
	// Addr is the UDP and TCP address Listen and ListenAndServe bind (the
	// same port for both, also when its port is 0); "" means DefaultAddr.
	// Serve ignores it.
	Addr string
	// Zones are the forward zones the server is authoritative for, e.g.
	// "lab.". Names below them are answered from Records only, never
	// forwarded: a name Records does not know is NXDOMAIN. Empty: no
	// forward zone.
	Zones []string
	// ReverseFor lists the lab subnets: the server is authoritative for
	// their in-addr.arpa / ip6.arpa zones (rounded to whole octets or
	// nibbles, split into several zones when needed). PTR queries for other
	// addresses are answered when Records knows the address, forwarded
	// otherwise. Empty: no reverse zone.
	ReverseFor []netip.Prefix
	// Records provides A, AAAA and PTR data; nil means none. A lookup
	// error is answered SERVFAIL (Stats.RecordErrors).
	Records RecordSource
	// Hostname is the server's own name, used as SOA MNAME and NS target;
	// "" means "ns." plus the first zone (or "ns.lab." without zones). If
	// Records has addresses for it they are sent as glue.
	Hostname string
	// Upstreams are resolvers ("192.0.2.53", "192.0.2.53:5353", "[2001:db8::53]:53";
	// IP addresses, not names) that get every query
	// outside the zones, tried in order, over UDP with a retry over TCP when
	// the answer is truncated. With none, such queries are REFUSED.
	Upstreams []string
	// Allow lists the client networks served; nil or empty means
	// DefaultAllow(ReverseFor): loopback plus the lab subnets. See the type
	// documentation about amplification.
	Allow []netip.Prefix
	// TTL of authoritative answers, and SOA minimum (negative caching TTL);
	// 0 means DefaultTTL; negative is a configuration error.
	TTL time.Duration
	// UDPSize is the EDNS0 payload size advertised; 0 means
	// DefaultUDPSize; anything outside 512 to 65535 is a configuration
	// error.
	UDPSize int
	// RateLimit is the number of UDP responses per second per client
	// network (/24, /56); 0 means DefaultRateLimit, negative disables it.
	// Loopback clients are never limited (their source cannot be spoofed
	// from outside the host), nor TCP clients (a TCP handshake proves the
	// source address).
	RateLimit int
	// CacheSize is the number of forwarded answers cached; 0 means
	// DefaultCacheSize, negative disables the cache.
	CacheSize int
	// UpstreamTimeout bounds one exchange with one upstream; 0 means
	// DefaultUpstreamTimeout; negative is a configuration error.
	UpstreamTimeout time.Duration
	// TCPIdleTimeout closes a TCP connection with no query in flight after
	// this long; a query must also arrive whole within it. 0 means
	// DefaultTCPIdleTimeout; negative is a configuration error.
	TCPIdleTimeout time.Duration
	// MaxTCPConns bounds the TCP connections open at once. A new
	// connection beyond it does not wait and is not refused while some
	// connection is idle (no query in flight): the one idle for longest is
	// closed to make room (Stats.TCPShed), so idle connections cannot lock
	// clients out. Only when every connection has a query in flight is the
	// new one closed (Stats.TCPRefused). 0 means DefaultMaxTCPConns;
	// negative is a configuration error.
	MaxTCPConns int
	// MaxTCPConnsPerClient bounds the TCP connections of one client
	// address the same way: beyond it, that client's connection idle for
	// longest is closed. 0 means DefaultMaxTCPConnsPerClient; negative
	// means no per-client bound (MaxTCPConns still applies).
	MaxTCPConnsPerClient int
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger

	once  sync.Once
	cfg   *config
	err   error
	stats counters
}

// Stats are counters of a running Server, from Server.Stats. Malformed,
// SendErrors and RecordErrors mean what the same names mean in dhcpsrv and
// tftpsrv (see the server contract in the documentation of package
// github.com/metalboot/metalboot).
type Stats struct {
	// Queries counts well-formed queries received from allowed clients.
	Queries uint64
	// Answered counts queries answered authoritatively from the lab zones,
	// NXDOMAIN and NODATA included.
	Answered uint64
	// Forwarded counts queries sent to an upstream (cache misses).
	Forwarded uint64
	// CacheHits counts queries answered from the forwarding cache.
	CacheHits uint64
	// Refused counts REFUSED answers: no upstream, zone transfers, classes
	// other than IN.
	Refused uint64
	// Failed counts SERVFAIL answers (every upstream failed) and queries
	// dropped because too many were waiting on upstreams.
	Failed uint64
	// Denied counts packets and connections from clients outside Allow,
	// dropped without an answer.
	Denied uint64
	// RateLimited counts UDP queries over the rate limit.
	RateLimited uint64
	// Malformed counts packets dropped because they did not parse, or were
	// responses rather than queries.
	Malformed uint64
	// TCPShed counts idle TCP connections closed to make room for a new
	// one (MaxTCPConns, MaxTCPConnsPerClient).
	TCPShed uint64
	// TCPRefused counts TCP connections closed at once because every
	// connection that could make room had a query in flight.
	TCPRefused uint64
	// SendErrors counts answers the socket would not send.
	SendErrors uint64
	// RecordErrors counts queries answered SERVFAIL because the
	// RecordSource failed: a name it could not look up is never
	// answered NXDOMAIN.
	RecordErrors uint64
}

type counters struct {
	queries, answered, forwarded, cacheHits, refused, failed,
	denied, rateLimited, malformed, tcpShed, tcpRefused,
	sendErrors, recordErrors atomic.Uint64
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Queries: c.queries.Load(), Answered: c.answered.Load(), Forwarded: c.forwarded.Load(),
		CacheHits: c.cacheHits.Load(), Refused: c.refused.Load(), Failed: c.failed.Load(),
		Denied: c.denied.Load(), RateLimited: c.rateLimited.Load(), Malformed: c.malformed.Load(),
		TCPShed: c.tcpShed.Load(), TCPRefused: c.tcpRefused.Load(),
		SendErrors: c.sendErrors.Load(), RecordErrors: c.recordErrors.Load(),
	}
}

// Validate reports every configuration mistake of s, each naming its
// field, joined in one error (errors.Join) whose parts wrap [ErrConfig];
// nil means the configuration is usable. It binds nothing. Listen, Serve
// and ListenAndServe call it first and return its error.
func (s *Server) Validate() error {
	_, err := s.compile()
	return err
}

// Listen validates the configuration and opens what Serve takes: a UDP
// socket and a TCP listener on Addr (DefaultAddr when empty), the same
// port for both. A bind error is returned here, before anything is
// served, and nothing stays open. The caller owns both: Serve does not
// close them.
func (s *Server) Listen(ctx context.Context) (net.PacketConn, net.Listener, error) {
	if err := s.setup(); err != nil {
		return nil, nil, err
	}
	addr := s.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	return ListenUDPTCP(ctx, addr)
}

// ListenAndServe is Listen then Serve: it serves until ctx ends, then
// closes the socket and listener it opened and returns nil.
// Configuration and bind errors are returned at once.
func (s *Server) ListenAndServe(ctx context.Context) error {
	pc, l, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	defer pc.Close()
	defer l.Close()
	return s.Serve(ctx, pc, l)
}

// ListenUDPTCP opens a UDP socket and a TCP listener on the same address and
// port. With port 0 it picks a port free for both (trying a few times).
func ListenUDPTCP(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	var lc net.ListenConfig
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnssrv: listen %q: %w", addr, err)
	}
	var lastErr error
	for range 10 {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnssrv: %w", err) // net's error names "listen udp <addr>"
		}
		p := port
		if p == "0" || p == "" {
			p = strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		}
		l, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, p))
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" && port != "" {
			break
		}
	}
	return nil, nil, fmt.Errorf("dnssrv: %w", lastErr)
}

// Serve answers DNS queries arriving on pc (UDP) and l (TCP), which the
// caller opened (with Listen or otherwise); either may be nil, not both
// (ErrNoListener). It returns nil when ctx ends, after waiting for its
// goroutines, and never closes pc or l: reads are interrupted with
// deadlines, which are cleared again before Serve returns. (A Listener
// without a SetDeadline method, unlike *net.TCPListener, cannot be
// interrupted: Serve then returns without waiting for its pending Accept,
// which ends when the caller closes l.) The TCP connections Serve
// accepted are its own and are closed. If reading either fails Serve stops
// both and returns that error. It returns the configuration error of
// Validate without serving.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	if err := s.setup(); err != nil {
		return err
	}
	if pc == nil && l == nil {
		return ErrNoListener
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if pc != nil {
		s.cfg.log.Info("dns listening", "net", "udp", "addr", pc.LocalAddr().String())
		wg.Go(func() { errs <- s.serveUDP(ctx, pc, &wg) })
	}
	if l != nil {
		s.cfg.log.Info("dns listening", "net", "tcp", "addr", l.Addr().String())
		wg.Go(func() { errs <- s.serveTCP(ctx, l, &wg) })
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs: // one side failed: stop the other
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// serveUDP reads pc: authoritative and cached answers are computed in the
// reading goroutine, upstream exchanges in their own goroutines. On Linux
// one reader drains the socket with raw system calls (sockets.ServeUDP:
// about half the CPU time per query of Go's ReadFrom/WriteTo, which hand
// the processor to another thread during most loopback sends); elsewhere
// one reader per CPU.
func (s *Server) serveUDP(ctx context.Context, pc net.PacketConn, wg *sync.WaitGroup) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer sockets.InterruptReads(ctx, pc.SetReadDeadline)()
	n := runtime.GOMAXPROCS(0)
	if _, ok := pc.(*net.UDPConn); ok && sockets.RawUDP {
		n = 1
	}
	errs := make(chan error, n)
	var readers sync.WaitGroup
	for range n {
		readers.Go(func() {
			err := s.udpReader(ctx, pc, wg)
			errs <- err
			if err != nil {
				stop() // stop the other readers too
			}
		})
	}
	readers.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return fmt.Errorf("dnssrv: udp: %w", err)
		}
	}
	return nil
}

func (s *Server) udpReader(ctx context.Context, pc net.PacketConn, wg *sync.WaitGroup) error {
	udp, _ := pc.(*net.UDPConn)
	in := make([]byte, 4096)
	out := make([]byte, 0, 4096)
	if udp != nil {
		// Authoritative and cached answers in the poller's read loop;
		// queries to forward leave it for their own goroutine.
		ok, err := sockets.ServeUDP(udp, len(in), func(b []byte, from netip.AddrPort, out []byte) ([]byte, netip.AddrPort) {
			resp, fwd := s.handlePacket(ctx, b, out, from.Addr(), true)
			if fwd != nil {
				s.forwardUDP(ctx, pc, udp, fwd, from, wg)
				return nil, netip.AddrPort{}
			}
			return resp, netip.AddrPort{}
		}, func(error) { s.stats.sendErrors.Add(1) })
		if ok {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return err
		}
	}
	for {
		var (
			n    int
			from netip.AddrPort
			err  error
		)
		if udp != nil {
			n, from, err = udp.ReadFromUDPAddrPort(in)
		} else {
			var a net.Addr
			n, a, err = pc.ReadFrom(in)
			from = addrPortOf(a)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		resp, fwd := s.handlePacket(ctx, in[:n], out[:cap(out)], from.Addr(), true)
		if fwd != nil {
			s.forwardUDP(ctx, pc, udp, fwd, from, wg)
			continue
		}
		if resp != nil {
			s.writeUDP(pc, udp, resp, from)
			out = resp[:0]
		}
	}
}

// forwardUDP answers a query to forward in a goroutine of its own.
func (s *Server) forwardUDP(ctx context.Context, pc net.PacketConn, udp *net.UDPConn, fwd *pending, from netip.AddrPort, wg *sync.WaitGroup) {
	if !s.cfg.fwdSlots.TryAcquire() {
		s.stats.failed.Add(1)
		return
	}
	wg.Go(func() {
		defer s.cfg.fwdSlots.Release()
		if b := s.finishForward(ctx, fwd, nil); b != nil {
			s.writeUDP(pc, udp, b, from)
		}
	})
}

func (s *Server) writeUDP(pc net.PacketConn, udp *net.UDPConn, b []byte, to netip.AddrPort) {
	var err error
	if udp != nil {
		_, err = udp.WriteToUDPAddrPort(b, to)
	} else {
		_, err = pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
	}
	if err != nil {
		s.stats.sendErrors.Add(1)
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	default:
		ap, _ := netip.ParseAddrPort(a.String())
		return ap
	}
}

// accepted is one result of Accept.
type accepted struct {
	c   net.Conn
	err error
}

func (s *Server) serveTCP(ctx context.Context, l net.Listener, wg *sync.WaitGroup) error {
	conns := newTCPConns(s.cfg.maxTCPConns, s.cfg.maxTCPPerClient)
	stop := context.AfterFunc(ctx, conns.closeAll)
	defer stop()
	// Accept runs in a goroutine of its own, so Serve can return when ctx
	// ends even for a Listener it cannot interrupt; with SetDeadline (a
	// *net.TCPListener) it is interrupted and waited for.
	accepts := make(chan accepted)
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := l.Accept()
			select {
			case accepts <- accepted{c, err}:
			case <-ctx.Done():
				if c != nil {
					c.Close()
				}
				return
			}
			if err != nil && !isTimeout(err) {
				return
			}
		}
	}()
	if dl, ok := l.(interface{ SetDeadline(time.Time) error }); ok {
		restore := sockets.InterruptReads(ctx, dl.SetDeadline)
		defer func() { <-acceptDone; restore() }()
	}
	for {
		var a accepted
		select {
		case <-ctx.Done():
			return nil
		case a = <-accepts:
		}
		c, err := a.c, a.err
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isTimeout(err) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("dnssrv: tcp accept: %w", err)
		}
		from := addrPortOf(c.RemoteAddr()).Addr()
		if !s.cfg.allowed(from) {
			s.stats.denied.Add(1)
			c.Close()
			continue
		}
		tc, shed := conns.admit(c, from, time.Now())
		s.stats.tcpShed.Add(uint64(shed))
		if tc == nil {
			if ctx.Err() == nil {
				s.stats.tcpRefused.Add(1)
				s.cfg.log.Debug("dns tcp connection refused: every slot has a query in flight", "client", from)
			}
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() {
				conns.release(tc)
				c.Close()
			}()
			s.serveTCPConn(ctx, conns, tc)
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *Server) serveTCPConn(ctx context.Context, conns *tcpConns, tc *tcpConn) {
	c, from, idle := tc.c, tc.from, s.cfg.tcpIdle
	in := make([]byte, dns.MaxMsgSize)
	out := make([]byte, 0, 4096)
	var hdr [2]byte
	for ctx.Err() == nil {
		// The whole next query must arrive within the idle timeout.
		c.SetReadDeadline(time.Now().Add(idle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, in[:n]); err != nil {
			return
		}
		conns.setBusy(tc, true, time.Time{})
		resp, fwd := s.handlePacket(ctx, in[:n], out[:cap(out)], from, false)
		if fwd != nil {
			resp = s.finishForward(ctx, fwd, out[:cap(out)])
		}
		if resp != nil { // nil: dropped (malformed), no answer, as over UDP
			binary.BigEndian.PutUint16(hdr[:], uint16(len(resp)))
			bufs := net.Buffers{hdr[:], resp}
			c.SetWriteDeadline(time.Now().Add(idle))
			if _, err := bufs.WriteTo(c); err != nil {
				s.stats.sendErrors.Add(1)
				return
			}
			if cap(resp) > cap(out) {
				out = resp[:0]
			}
		}
		conns.setBusy(tc, false, time.Now())
	}
}
