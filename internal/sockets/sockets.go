// Package sockets holds what every metalboot server does with the sockets
// a caller hands it (the module's server contract: Serve never closes
// them, and leaves them as it got them).
package sockets

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// InterruptReads makes reads on a socket return once ctx ends, by setting
// a read deadline in the past with setDeadline. The function it returns
// undoes that (clears the deadline, after the deadline was set if it is
// being set), so the socket is left as the caller gave it.
func InterruptReads(ctx context.Context, setDeadline func(time.Time) error) (restore func()) {
	var (
		mu          sync.Mutex
		fired, done bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			fired = true
			_ = setDeadline(time.Unix(1, 0))
		}
	})
	return func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		done = true
		if fired {
			_ = setDeadline(time.Time{})
		}
	}
}

// Handler answers one datagram for ServeUDP: b is the datagram, from its
// sender, out a buffer to build the answer in. It returns the answer (nil:
// none) and where to send it (the zero AddrPort: to the sender).
type Handler func(b []byte, from netip.AddrPort, out []byte) (resp []byte, to netip.AddrPort)
