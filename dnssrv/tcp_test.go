package dnssrv

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDigTCPAfterIdleFlood opens 300 idle TCP connections from an allowed
// client (more than DefaultMaxTCPConns), then asks the real dig over TCP:
// it must be answered. Before, the idle connections took every slot for
// 10 s and a new connection was closed at once; now the oldest idle one is
// shed to make room.
func TestDigTCPAfterIdleFlood(t *testing.T) {
	needDig(t)
	s := demoServer(demoLab())
	addr := start(t, s)
	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	for range 300 {
		c, err := net.Dial("tcp", addr.String())
		require.NoError(t, err)
		idle = append(idle, c)
	}
	// A one-byte query prefix on some: a query started and never finished
	// is idle too.
	for _, c := range idle[:50] {
		_, err := c.Write([]byte{0})
		require.NoError(t, err)
	}
	r := dig(t, addr, "+tcp", "+time=10", "smpc.lab", "A")
	require.True(t, r.tcp, "dig used TCP: %s", r.out)
	require.Equal(t, "NOERROR", r.status, r.out)
	assert.Equal(t, []string{"smpc.lab. 60 IN A 172.22.10.54"}, r.answer, r.out)
}

// tcpAsk sends m over the TCP connection c and returns the answer.
func tcpAsk(t *testing.T, c net.Conn, m *dns.Msg) (*dns.Msg, error) {
	t.Helper()
	b := wire(t, m)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)); err != nil {
		return nil, err
	}
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	p := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	if _, err := io.ReadFull(c, p); err != nil {
		return nil, err
	}
	r := new(dns.Msg)
	return r, r.Unpack(p)
}

// requireClosed waits (generously) for the server to close c.
func requireClosed(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := c.Read(make([]byte, 1))
	require.Error(t, err, msg)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "%s: still open after 20s", msg)
}

// TestTCPIdleTimeout checks a connection with no query in flight is closed
// after TCPIdleTimeout: right after it opens, after an answer, and while a
// query arrives too slowly.
func TestTCPIdleTimeout(t *testing.T) {
	s := demoServer(demoLab())
	s.TCPIdleTimeout = 200 * time.Millisecond
	addr := start(t, s)
	c, err := net.Dial("tcp", addr.String())
	require.NoError(t, err)
	defer c.Close()
	requireClosed(t, c, "never used")

	c, err = net.Dial("tcp", addr.String())
	require.NoError(t, err)
	defer c.Close()
	r, err := tcpAsk(t, c, query("mp.lab.", dns.TypeA))
	require.NoError(t, err)
	require.Len(t, r.Answer, 1)
	requireClosed(t, c, "idle after an answer")

	// A query trickling in a byte at a time, each well within the
	// timeout: the whole query must arrive within it. (Bounded: 100 bytes
	// 200 ms apart.)
	c, err = net.Dial("tcp", addr.String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte{0xff, 0xff}) // a 65535-byte query follows
	require.NoError(t, err)
	closed := false
	for i := 0; i < 100 && !closed; i++ {
		if _, err := c.Write([]byte{0}); err != nil {
			closed = true
			break
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		closed = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	require.True(t, closed, "a query trickling in for 20s was still being read")
}

// TestTCPPerClientSheds checks a client at MaxTCPConnsPerClient gets a new
// connection by losing its own connection idle for longest, and that
// another client's connections are untouched.
func TestTCPPerClientSheds(t *testing.T) {
	s := demoServer(demoLab())
	s.MaxTCPConnsPerClient = 3
	addr := start(t, s)
	var conns []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", addr.String())
		require.NoError(t, err)
		defer c.Close()
		// A query answered: the connection is admitted, and conns[i]
		// was last active before conns[i+1].
		_, err = tcpAsk(t, c, query("mp.lab.", dns.TypeA))
		require.NoError(t, err)
		conns = append(conns, c)
	}
	requireClosed(t, conns[0], "the client's oldest idle connection")
	for _, c := range conns[1:] {
		r, err := tcpAsk(t, c, query("smpc.lab.", dns.TypeA))
		require.NoError(t, err)
		require.Len(t, r.Answer, 1)
	}
	assert.EqualValues(t, 1, s.Stats().TCPShed)
	assert.Zero(t, s.Stats().TCPRefused)
}

// TestTCPBusyNotShed checks that a connection with a query in flight is
// never shed: with every slot busy waiting on an upstream, a new connection
// is refused instead, and the busy ones still get their answers.
func TestTCPBusyNotShed(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // an upstream that never answers
	require.NoError(t, err)
	defer dead.Close()
	s := demoServer(demoLab())
	s.Upstreams = []string{dead.LocalAddr().String()}
	s.UpstreamTimeout = 3 * time.Second
	s.MaxTCPConns = 2
	addr := start(t, s)
	type result struct {
		r   *dns.Msg
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		c, err := net.Dial("tcp", addr.String())
		require.NoError(t, err)
		defer c.Close()
		go func() {
			r, err := tcpAsk(t, c, query("example.test.", dns.TypeA))
			results <- result{r, err}
		}()
	}
	require.Eventually(t, func() bool { return s.Stats().Forwarded == 2 }, 10*time.Second, 5*time.Millisecond)
	c, err := net.Dial("tcp", addr.String())
	require.NoError(t, err)
	defer c.Close()
	requireClosed(t, c, "a connection beyond MaxTCPConns while every slot is busy")
	for range 2 {
		res := <-results
		require.NoError(t, res.err)
		assert.Equal(t, dns.RcodeServerFailure, res.r.Rcode)
	}
	st := s.Stats()
	assert.EqualValues(t, 1, st.TCPRefused)
	assert.Zero(t, st.TCPShed)
}

func TestTCPLimitsConfig(t *testing.T) {
	for _, s := range []*Server{{TCPIdleTimeout: -1}, {MaxTCPConns: -1}} {
		assert.ErrorIs(t, s.Serve(context.Background(), nil, nil), ErrConfig)
	}
	s := &Server{MaxTCPConnsPerClient: -1}
	require.NoError(t, s.setup())
	assert.Zero(t, s.cfg.maxTCPPerClient)
	assert.Equal(t, DefaultMaxTCPConns, s.cfg.maxTCPConns)
	assert.Equal(t, DefaultTCPIdleTimeout, s.cfg.tcpIdle)
}
