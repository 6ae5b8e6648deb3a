package dnssrv

import (
	"net/netip"
	"sync"
	"time"
)

type limitVerdict int

const (
	limitPass limitVerdict = iota
	limitDrop
	limitSlip // answer with an empty truncated reply: a real client retries over TCP
)

const limiterMaxEntries = 8192

// limiter is a token bucket per client network (IPv4 /24, IPv6 /56).
type limiter struct {
	rate float64 // tokens per second, also the burst
	mu   sync.Mutex
	m    map[netip.Prefix]*bucket
}

type bucket struct {
	tokens  float64
	last    time.Time
	dropped uint32
}

func newLimiter(rate int) *limiter {
	return &limiter{rate: float64(rate), m: make(map[netip.Prefix]*bucket)}
}

func clientNet(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 56
	}
	p, _ := a.Prefix(bits)
	return p
}

func (l *limiter) allow(a netip.Addr, now time.Time) limitVerdict {
	key := clientNet(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[key]
	if b == nil {
		if len(l.m) >= limiterMaxEntries {
			l.sweep(now)
		}
		b = &bucket{tokens: l.rate, last: now}
		l.m[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.rate, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return limitPass
	}
	b.dropped++
	if b.dropped%2 == 0 {
		return limitSlip
	}
	return limitDrop
}

// sweep forgets buckets that have refilled (idle for a second or more); if
// the map is still full (a flood from many networks) it starts over.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.m {
		if now.Sub(b.last) >= time.Second {
			delete(l.m, k)
		}
	}
	if len(l.m) >= limiterMaxEntries {
		clear(l.m)
	}
}
