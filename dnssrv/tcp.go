package dnssrv

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// tcpConns tracks the server's TCP connections, so that idle ones can be
// shed when a new connection needs their slot.
//
// A connection is idle while it waits for a query, including one that has
// started to arrive: a client holding a half-sent query holds no query in
// flight. It is busy from the moment a whole query has been read until its
// answer is written.
type tcpConns struct {
	max, perClient int // perClient 0: no per-client limit

	mu       sync.Mutex
	all      map[*tcpConn]struct{}
	byClient map[netip.Addr]int
	closed   bool
}

type tcpConn struct {
	c     net.Conn
	from  netip.Addr
	busy  bool
	since time.Time // accepted, or last answer written
}

func newTCPConns(max, perClient int) *tcpConns {
	return &tcpConns{max: max, perClient: perClient, all: map[*tcpConn]struct{}{}, byClient: map[netip.Addr]int{}}
}

// admit registers c from client from. When the client has perClient
// connections, its oldest idle one is closed to make room; when the server
// has max, the oldest idle one of any client is. shed counts those. It
// returns nil (and does not close c) when no idle connection could make
// room, or the server is shutting down.
func (t *tcpConns) admit(c net.Conn, from netip.Addr, now time.Time) (tc *tcpConn, shed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, 0
	}
	if t.perClient > 0 && t.byClient[from] >= t.perClient {
		if !t.shedOldest(func(o *tcpConn) bool { return o.from == from }) {
			return nil, shed
		}
		shed++
	}
	if len(t.all) >= t.max {
		if !t.shedOldest(func(*tcpConn) bool { return true }) {
			return nil, shed
		}
		shed++
	}
	tc = &tcpConn{c: c, from: from, since: now}
	t.all[tc] = struct{}{}
	t.byClient[from]++
	return tc, shed
}

// shedOldest closes and forgets the idle connection with the oldest
// activity among those match accepts.
func (t *tcpConns) shedOldest(match func(*tcpConn) bool) bool {
	var oldest *tcpConn
	for o := range t.all {
		if !o.busy && match(o) && (oldest == nil || o.since.Before(oldest.since)) {
			oldest = o
		}
	}
	if oldest == nil {
		return false
	}
	oldest.c.Close()
	t.forget(oldest)
	return true
}

func (t *tcpConns) forget(tc *tcpConn) {
	if _, ok := t.all[tc]; !ok {
		return // shed already
	}
	delete(t.all, tc)
	if t.byClient[tc.from] <= 1 {
		delete(t.byClient, tc.from)
	} else {
		t.byClient[tc.from]--
	}
}

// release forgets tc when its connection ends.
func (t *tcpConns) release(tc *tcpConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forget(tc)
}

// setBusy marks tc busy (a query read) or idle (its answer written).
func (t *tcpConns) setBusy(tc *tcpConn, busy bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tc.busy = busy
	if !busy {
		tc.since = now
	}
}

// closeAll closes every connection and admits no more.
func (t *tcpConns) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for tc := range t.all {
		tc.c.Close()
	}
}
