package tftpsrv

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/metalboot/metalboot/internal/sockets"
)

// listenReadBuffer is the receive buffer asked for the listening socket.
const listenReadBuffer = 4 << 20

// listener reads requests from the listening socket together with the
// address they were sent to and the interface they arrived on (IP_PKTINFO),
// so a transfer answers from the address the client asked and its block
// size can be capped by that interface's MTU.
type listener struct {
	conn net.PacketConn
	uc   *net.UDPConn // nil if conn is another kind of PacketConn
	p4   *ipv4.PacketConn
	p6   *ipv6.PacketConn
}

func newListener(conn net.PacketConn) *listener {
	l := &listener{conn: conn}
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		return l
	}
	l.uc = uc
	// Room for bursts: every request, and in single-port mode every
	// acknowledgement of every transfer, lands in this one socket. The
	// kernel caps the size at net.core.rmem_max.
	_ = uc.SetReadBuffer(listenReadBuffer)
	if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil && !la.IP.IsUnspecified() {
		l.p6 = ipv6.NewPacketConn(uc)
		if l.p6.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true) != nil {
			l.p6 = nil
		}
		return l
	}
	l.p4 = ipv4.NewPacketConn(uc)
	if l.p4.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true) != nil {
		l.p4 = nil
	}
	return l
}

// enablePacketInfo asks the kernel for the destination address and interface
// of each datagram on conn. Serve does this itself; tests call it before
// starting Serve so that a request racing Serve's start is not read without
// them.
func enablePacketInfo(conn net.PacketConn) { newListener(conn) }

// packetInfo is where a request came from and was sent to.
type packetInfo struct {
	from    netip.AddrPort
	dst     netip.Addr // invalid when unknown
	ifIndex int        // 0 when unknown
}

// replySource is the address to answer from: the one the request was sent
// to, when it is known and is a unicast address (not a broadcast, multicast
// or wildcard address, which the kernel must replace with its own choice).
func (i packetInfo) replySource() (netip.Addr, bool) {
	d := i.dst
	ok := d.IsValid() && !d.IsMulticast() && !d.IsUnspecified() && d != netip.AddrFrom4([4]byte{255, 255, 255, 255})
	return d, ok
}

func (l *listener) read(buf []byte) (int, packetInfo, error) {
	var (
		n    int
		info packetInfo
		src  net.Addr
		err  error
	)
	switch {
	case l.p4 != nil:
		var cm *ipv4.ControlMessage
		n, cm, src, err = l.p4.ReadFrom(buf)
		if cm != nil {
			info.dst, _ = netip.AddrFromSlice(cm.Dst)
			info.ifIndex = cm.IfIndex
		}
	case l.p6 != nil:
		var cm *ipv6.ControlMessage
		n, cm, src, err = l.p6.ReadFrom(buf)
		if cm != nil {
			info.dst, _ = netip.AddrFromSlice(cm.Dst)
			info.ifIndex = cm.IfIndex
		}
	default:
		n, src, err = l.conn.ReadFrom(buf)
	}
	if ua, ok := src.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		info.from = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	info.dst = info.dst.Unmap()
	return n, info, err
}

// writeTo sends b from the listening socket to the client, from the address
// the client's request was sent to when it is known.
func (l *listener) writeTo(b []byte, info packetInfo) error {
	to := net.UDPAddrFromAddrPort(info.from)
	src, ok := info.replySource()
	var err error
	switch {
	case l.p4 != nil && ok && src.Is4():
		_, err = l.p4.WriteTo(b, &ipv4.ControlMessage{Src: src.AsSlice()}, to)
	case l.p6 != nil && ok:
		_, err = l.p6.WriteTo(b, &ipv6.ControlMessage{Src: src.AsSlice()}, to)
	default:
		_, err = l.conn.WriteTo(b, to)
	}
	return err
}

// mtuCache remembers interface MTUs: looking one up is a netlink dump.
type mtuCache struct {
	mu sync.Mutex
	m  map[int]mtuEntry
}

type mtuEntry struct {
	mtu  int
	when time.Time
}

// maxBlock is the largest blksize that fits in one IP packet on interface
// ifIndex: its MTU minus IP, UDP and TFTP headers. Without interface
// information it is 1468 (an Ethernet MTU of 1500).
func (c *mtuCache) maxBlock(ifIndex int, v6 bool) int {
	const fallback = 1468
	if ifIndex <= 0 {
		return fallback
	}
	c.mu.Lock()
	e, ok := c.m[ifIndex]
	c.mu.Unlock()
	if !ok || time.Since(e.when) > time.Minute {
		ifi, err := net.InterfaceByIndex(ifIndex)
		if err != nil || ifi.MTU <= 0 {
			return fallback
		}
		e = mtuEntry{ifi.MTU, time.Now()}
		c.mu.Lock()
		if c.m == nil {
			c.m = make(map[int]mtuEntry)
		}
		c.m[ifIndex] = e
		c.mu.Unlock()
	}
	hdr := 20 + 8 + 4
	if v6 {
		hdr = 40 + 8 + 4
	}
	return max(minBlockSize, min(e.mtu-hdr, maxBlockSize))
}

// udpTransport is a transfer on its own UDP socket, connected to the client
// (RFC 1350: each side picks a new transfer ID), so the kernel delivers only
// that client's packets. Reads and sends go through sockets.Connected:
// raw system calls on Linux, one sendmmsg(2) for a window.
type udpTransport struct {
	c        *sockets.Connected
	deadline time.Time
}

func dialTransport(info packetInfo) (*udpTransport, error) {
	var laddr *net.UDPAddr
	if src, ok := info.replySource(); ok {
		laddr = &net.UDPAddr{IP: src.AsSlice(), Zone: src.Zone()}
	}
	c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(info.from))
	if err != nil {
		return nil, err
	}
	sc, err := sockets.NewConnected(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &udpTransport{c: sc}, nil
}

func (t *udpTransport) send(pkts [][]byte) error { return t.c.Send(pkts) }

func (t *udpTransport) recv(buf []byte, deadline time.Time) (int, error) {
	if !deadline.Equal(t.deadline) {
		if err := t.c.Conn().SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		t.deadline = deadline
	}
	n, err := t.c.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, errTimeout
	}
	return n, err
}

func (t *udpTransport) close() { t.c.Conn().Close() }

// portMux demultiplexes the listening socket in single-port mode: packets
// from a client with a transfer in progress go to that transfer; anything
// else is a new request or is dropped. Nothing is remembered for a packet
// that starts no transfer.
type portMux struct {
	l  *listener
	mu sync.Mutex
	m  map[netip.AddrPort]*muxTransport
}

// deliver hands pkt to the transfer of its sender, if there is one.
func (m *portMux) deliver(from netip.AddrPort, pkt []byte) bool {
	m.mu.Lock()
	t := m.m[from]
	m.mu.Unlock()
	if t == nil {
		return false
	}
	select {
	case t.in <- append([]byte(nil), pkt...):
	default: // the transfer is not keeping up: a lost packet
	}
	return true
}

// open registers a transfer for info.from; it fails if one is in progress.
func (m *portMux) open(info packetInfo) (*muxTransport, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, busy := m.m[info.from]; busy {
		return nil, false
	}
	if m.m == nil {
		m.m = make(map[netip.AddrPort]*muxTransport)
	}
	t := &muxTransport{mux: m, info: info, in: make(chan []byte, 64), done: make(chan struct{})}
	m.m[info.from] = t
	return t, true
}

// muxTransport is a transfer answered from the listening socket.
type muxTransport struct {
	mux   *portMux
	info  packetInfo
	in    chan []byte
	done  chan struct{}
	once  sync.Once
	timer *time.Timer
}

func (t *muxTransport) send(pkts [][]byte) error {
	for _, p := range pkts {
		if err := t.mux.l.writeTo(p, t.info); err != nil {
			return err
		}
	}
	return nil
}

func (t *muxTransport) recv(buf []byte, deadline time.Time) (int, error) {
	d := time.Until(deadline)
	if d <= 0 {
		return 0, errTimeout
	}
	if t.timer == nil {
		t.timer = time.NewTimer(d)
	} else {
		t.timer.Reset(d)
	}
	select {
	case p := <-t.in:
		return copy(buf, p), nil
	case <-t.timer.C:
		return 0, errTimeout
	case <-t.done:
		return 0, net.ErrClosed
	}
}

func (t *muxTransport) close() {
	t.once.Do(func() {
		close(t.done)
		t.mux.mu.Lock()
		delete(t.mux.m, t.info.from)
		t.mux.mu.Unlock()
	})
}
