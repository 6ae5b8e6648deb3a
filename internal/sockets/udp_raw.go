//go:build linux && (amd64 || arm64)

package sockets

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"
)

// RawUDP reports whether ServeUDP works here (for *net.UDPConn).
const RawUDP = true

// ServeUDP reads every datagram queued on c and answers it in one pass,
// then waits (in Go's network poller) for more: handle gets the datagram
// (at most size bytes), its sender and a buffer of size bytes to build the
// answer in, and returns the answer (nil: none) and where to send it (the
// zero AddrPort: to the sender). The answer must stay as it is until
// handle is called with the same buffer again (build it in out, or return
// bytes nobody changes). It returns when a read fails (a deadline set by
// InterruptReads included) with that error.
//
// Why: net.UDPConn's ReadFrom and WriteTo enter the scheduler's system
// call state, and on a machine where a loopback sendto takes ~10 µs the
// runtime's monitor hands the goroutine's processor to another thread
// during most of them: two futex wake-ups per packet. recvfrom and sendto
// on a non-blocking socket do not block, so here they are made as raw
// system calls, inside the connection's RawConn.Read callback (which
// holds the read lock; sending whole datagrams needs no lock). Datagrams
// are read and answered in batches of up to 16 (recvmmsg, sendmmsg): at a
// low rate that is one read, one send and one poll per query, as a C
// server does; under load, fewer. Linux on amd64 and arm64 only; ok is
// false elsewhere and for a conn whose SyscallConn fails, and the caller
// uses its portable loop.
//
// sendErr, if not nil, is called for each answer that could not be sent.
func ServeUDP(c *net.UDPConn, size int, handle Handler, sendErr func(error)) (ok bool, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, nil
	}
	var rerr error
	b := newBatch(size)
	err = rc.Read(func(fd uintptr) bool { return b.serve(fd, handle, sendErr, &rerr) })
	if err == nil {
		err = rerr
	}
	if err == nil {
		err = errors.New("sockets: read loop ended")
	}
	return true, err
}

// batchSize is how many datagrams one recvmmsg reads at most.
const batchSize = 16

// mmsghdr is struct mmsghdr of 64-bit Linux.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// batch holds the buffers of the recvmmsg/sendmmsg loop.
type batch struct {
	in    [batchSize][]byte
	out   [batchSize][]byte
	names [batchSize]syscall.RawSockaddrAny
	riov  [batchSize]syscall.Iovec
	rmsg  [batchSize]mmsghdr
	siov  [batchSize]syscall.Iovec
	smsg  [batchSize]mmsghdr
}

func newBatch(size int) *batch {
	b := &batch{}
	for i := range batchSize {
		b.in[i] = make([]byte, size)
		b.out[i] = make([]byte, size)
	}
	return b
}

func (b *batch) serve(fd uintptr, handle Handler, sendErr func(error), rerr *error) bool {
	for {
		for i := range batchSize {
			b.riov[i].Base = &b.in[i][0]
			b.riov[i].SetLen(len(b.in[i]))
			b.rmsg[i] = mmsghdr{}
			b.rmsg[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			b.rmsg[i].hdr.Namelen = syscall.SizeofSockaddrAny
			b.rmsg[i].hdr.Iov = &b.riov[i]
			b.rmsg[i].hdr.Iovlen = 1
		}
		r, wait, err := rawIO(sysRecvmmsg, fd, uintptr(unsafe.Pointer(&b.rmsg[0])), batchSize)
		if wait {
			return false // nothing queued: wait in the poller
		}
		if err != nil {
			*rerr = err
			return true
		}
		n := int(r)
		k := 0
		for i := range n {
			from, ok := addrPort(&b.names[i])
			if !ok {
				continue
			}
			resp, to := handle(b.in[i][:b.rmsg[i].n], from, b.out[k])
			if len(resp) == 0 {
				continue
			}
			b.siov[k].Base = &resp[0]
			b.siov[k].SetLen(len(resp))
			b.smsg[k] = mmsghdr{}
			b.smsg[k].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			b.smsg[k].hdr.Namelen = b.rmsg[i].hdr.Namelen
			if to.IsValid() && to != from {
				// Elsewhere: the sender's sockaddr slot is free once
				// handled, so the destination is written into it.
				b.smsg[k].hdr.Namelen = putSockaddr(&b.names[i], to)
			}
			b.smsg[k].hdr.Iov = &b.siov[k]
			b.smsg[k].hdr.Iovlen = 1
			k++
		}
		for sent := 0; sent < k; {
			r, _, e := syscall.RawSyscall6(sysSendmmsg, fd, uintptr(unsafe.Pointer(&b.smsg[sent])), uintptr(k-sent), 0, 0, 0)
			switch {
			case e == syscall.EINTR:
			case e != 0:
				// The first unsent answer failed: count it, go on.
				if sendErr != nil {
					sendErr(e)
				}
				sent++
			default:
				sent += int(r)
			}
		}
		if n < batchSize {
			// The queue was empty after these: wait. A datagram that
			// came meanwhile has set the poller's readiness, which the
			// wait sees at once.
			return false
		}
	}
}

// addrPort converts a sockaddr from recvmmsg.
func addrPort(sa *syscall.RawSockaddrAny) (netip.AddrPort, bool) {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := p.Port>>8 | p.Port<<8
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port), true
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := p.Port>>8 | p.Port<<8
		a := netip.AddrFrom16(p.Addr)
		if p.Scope_id != 0 {
			a = a.WithZone(zoneName(p.Scope_id))
		}
		return netip.AddrPortFrom(a, port), true
	}
	return netip.AddrPort{}, false
}

// putSockaddr writes to into sa and returns its length.
func putSockaddr(sa *syscall.RawSockaddrAny, to netip.AddrPort) uint32 {
	port := to.Port()
	nport := port>>8 | port<<8
	a := to.Addr()
	if a.Is4() {
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		*p = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Port: nport, Addr: a.As4()}
		return syscall.SizeofSockaddrInet4
	}
	p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
	*p = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Port: nport, Addr: a.As16()}
	if z := a.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			p.Scope_id = uint32(ifi.Index)
		}
	}
	return syscall.SizeofSockaddrInet6
}

func zoneName(idx uint32) string {
	if ifi, err := net.InterfaceByIndex(int(idx)); err == nil {
		return ifi.Name
	}
	return ""
}

// Connected is a connected UDP socket (a TFTP transfer's own port) whose
// Read and Send are raw system calls inside the socket's RawConn
// callbacks, for the reason ServeUDP gives: a transfer in lockstep reads
// one ACK and sends one block per round trip, and net.UDPConn's Read and
// Write each went through the scheduler's system-call state, which wakes
// the runtime's monitor thread whenever every processor was idle, that is
// on every block. Deadlines set on the conn apply to Read as they do to
// net.UDPConn.Read. Send may be called from several goroutines, Read
// from one at a time.
type Connected struct {
	c  *net.UDPConn
	rc syscall.RawConn
	// The callbacks and what they work on, made once: a closure per call
	// would allocate per packet. Read's state is its own (one reader at a
	// time); Send's is under smu, since a transfer's error packet may be
	// sent from another goroutine while the transfer sends.
	readFn, sendFn, batchFn func(fd uintptr) bool
	rbuf                    []byte
	rn                      int
	rerr                    error
	smu                     sync.Mutex
	sbuf                    []byte
	sn                      int
	serr                    error
	iov                     [batchSize]syscall.Iovec
	msgs                    [batchSize]mmsghdr
	k                       int
}

// NewConnected wraps c, which must be connected (net.DialUDP).
func NewConnected(c *net.UDPConn) (*Connected, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	sc := &Connected{c: c, rc: rc}
	sc.readFn, sc.sendFn, sc.batchFn = sc.read, sc.send, sc.sendBatch
	return sc, nil
}

// Conn returns the wrapped socket (for deadlines and Close).
func (c *Connected) Conn() *net.UDPConn { return c.c }

// Read reads one datagram into b, waiting in Go's poller (and so for the
// read deadline) while none is queued.
func (c *Connected) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, errors.New("sockets: Read into an empty buffer")
	}
	c.rbuf, c.rn, c.rerr = b, 0, nil
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	if err != nil {
		return 0, err
	}
	return c.rn, c.rerr
}

func (c *Connected) read(fd uintptr) bool {
	r, wait, err := rawIO(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
	c.rn, c.rerr = int(r), err
	return !wait
}

// Send sends each packet as one datagram, in order: one send(2) for one
// packet, sendmmsg(2) for more; it waits in the poller while the socket's
// buffer is full.
func (c *Connected) Send(pkts [][]byte) error {
	for _, p := range pkts {
		if len(p) == 0 {
			return errors.New("sockets: Send of an empty packet")
		}
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	if len(pkts) == 1 {
		c.sbuf, c.serr = pkts[0], nil
		err := c.rc.Write(c.sendFn)
		c.sbuf = nil
		if err == nil {
			err = c.serr
		}
		return err
	}
	for len(pkts) > 0 {
		k := min(len(pkts), batchSize)
		for i := range k {
			c.iov[i].Base = &pkts[i][0]
			c.iov[i].SetLen(len(pkts[i]))
			c.msgs[i] = mmsghdr{}
			c.msgs[i].hdr.Iov = &c.iov[i]
			c.msgs[i].hdr.Iovlen = 1
		}
		c.k, c.sn, c.serr = k, 0, nil
		err := c.rc.Write(c.batchFn)
		for i := range k {
			c.iov[i].Base = nil // keep no packet alive
		}
		if err == nil {
			err = c.serr
		}
		if err == nil && c.sn == 0 {
			err = errors.New("sockets: sendmmsg sent nothing")
		}
		if err != nil {
			return err
		}
		pkts = pkts[c.sn:]
	}
	return nil
}

func (c *Connected) send(fd uintptr) bool {
	_, wait, err := rawIO(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&c.sbuf[0])), uintptr(len(c.sbuf)))
	c.serr = err
	return !wait
}

func (c *Connected) sendBatch(fd uintptr) bool {
	r, wait, err := rawIO(sysSendmmsg, fd, uintptr(unsafe.Pointer(&c.msgs[0])), uintptr(c.k))
	c.sn, c.serr = int(r), err
	return !wait
}

// rawIO makes one non-blocking (MSG_DONTWAIT) socket call trap(fd, p, n,
// flags) as a raw system call, again after EINTR: wait is true for EAGAIN
// (the RawConn callback then returns false and waits in the poller).
func rawIO(trap, fd, p, n uintptr) (r uintptr, wait bool, err error) {
	for {
		r, _, e := syscall.RawSyscall6(trap, fd, p, n, syscall.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			return r, false, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, true, nil
		default:
			return 0, false, e
		}
	}
}
