package grubcfg

import (
	"net"
	"net/http"
	"strings"
	"time"
)

// DrainTimeout bounds how long closing a connection from Listener waits for
// the peer to acknowledge what was sent.
const DrainTimeout = 3 * time.Second

// Listener wraps an HTTP server's TCP listener for GRUB clients.
//
// GRUB 2.06 connects from the same TCP source port (21550) on every boot
// and never closes its side. When the server closes first, its socket sits
// in TIME_WAIT for a minute; a machine that reboots within that minute gets
// the same address from DHCP, presents the same 4-tuple, is refused, and
// GRUB's configfile fails after ~16 s of retries (measured: 3 boots in 4).
//
// Connections accepted through Listener close with a reset instead (SO_LINGER
// 0), which leaves no TIME_WAIT. A reset discards unsent data, so Close
// first waits, at most DrainTimeout, until the peer has acknowledged every
// byte (the kernel's send queue is empty). Non-TCP connections and other
// platforms pass through unchanged.
func Listener(l net.Listener) net.Listener { return resetListener{l} }

type resetListener struct{ net.Listener }

func (l resetListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		return &resetConn{TCPConn: tc}, nil
	}
	return c, nil
}

type resetConn struct {
	*net.TCPConn
}

func (c *resetConn) Close() error {
	deadline := time.Now().Add(DrainTimeout)
	for unsent(c.TCPConn) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_ = c.TCPConn.SetLinger(0)
	return c.TCPConn.Close()
}

// CloseAfterResponse wraps h so that responses to GRUB (User-Agent "GRUB
// …") carry "Connection: close": the server then closes right after the
// response, through Listener's reset, instead of holding the idle
// connection GRUB will never reuse.
func CloseAfterResponse(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.UserAgent(), "GRUB") {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}
