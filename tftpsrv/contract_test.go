package tftpsrv

// The server contract (package metalboot's documentation): the address
// is a field, Validate reports every mistake, Listen binds, Serve never
// closes what it did not open, defaults are what zero values do.

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateReportsEveryMistake(t *testing.T) {
	s := &Server{Addr: "127.0.0.1", Timeout: -time.Second, Retries: -1, MaxBlockSize: 4, MaxWindow: 70000, SendAhead: -2}
	err := s.Validate()
	require.Error(t, err)
	parts := err.(interface{ Unwrap() []error }).Unwrap()
	assert.Len(t, parts, 6)
	for _, p := range parts {
		assert.ErrorIs(t, p, ErrConfig)
	}
	for _, field := range []string{"Addr", "Timeout", "Retries", "MaxBlockSize", "MaxWindow", "SendAhead"} {
		assert.Contains(t, err.Error(), field+":")
	}
	assert.ErrorContains(t, (&Server{Addr: "127.0.0.1:x"}).Validate(), "Addr")
	assert.ErrorContains(t, (&Server{MaxBlockSize: 70000}).Validate(), "MaxBlockSize")

	// The zero value is valid, and so are the documented special values.
	assert.NoError(t, (&Server{}).Validate())
	assert.NoError(t, (&Server{Addr: "[::1]:0", MaxTimeout: -1, MaxWindow: -1, MaxTransfers: -1,
		MaxTransfersPerClient: -1, MaxBlockSize: 512, SendAhead: 1}).Validate())

	// Nothing binds or serves a bad configuration.
	_, err = s.Listen(context.Background())
	assert.ErrorIs(t, err, ErrConfig)
	assert.ErrorIs(t, s.ListenAndServe(context.Background()), ErrConfig)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer conn.Close()
	assert.ErrorIs(t, s.Serve(context.Background(), conn), ErrConfig)
	assert.ErrorIs(t, (&Server{}).Serve(context.Background(), nil), ErrNoListener)
}

// The exported defaults are what the zero values do.
func TestDefaultsAreTheZeroValues(t *testing.T) {
	var s Server
	assert.Equal(t, DefaultAddr, s.addr())
	assert.Equal(t, DefaultTimeout, s.timeout())
	assert.Equal(t, DefaultRetries, s.retries())
	assert.Equal(t, DefaultMaxWindow, s.maxWindow())
	assert.Equal(t, DefaultSendAhead, s.sendAhead())
	assert.Equal(t, DefaultMaxTransfers, s.maxTransfers())
	assert.Equal(t, DefaultMaxTimeout, s.maxTimeout())
	assert.Equal(t, DefaultMaxTransfersPerClient, s.maxTransfersPerClient())
}

// Listen reports a bind error itself, before anything is served.
func TestListenReportsBindErrors(t *testing.T) {
	taken, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer taken.Close()
	s := &Server{Addr: taken.LocalAddr().String()}
	_, err = s.Listen(context.Background())
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrConfig))
	assert.Error(t, s.ListenAndServe(context.Background()))

	s.Addr = "127.0.0.1:0"
	conn, err := s.Listen(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	assert.NotEqual(t, "127.0.0.1:0", conn.LocalAddr().String(), "Listen's socket tells the port")
}

// Serve leaves the socket open and without a deadline, in both socket
// modes: a second Serve on it works, and so does the caller's own read.
func TestServeLeavesConnOpen(t *testing.T) {
	for _, single := range []bool{false, true} {
		srv := &Server{SinglePort: single, FS: fstest.MapFS{"f": {Data: []byte("data")}}}
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		for range 2 {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, conn) }()
			c := newRawClient(t, conn.LocalAddr().String())
			c.send(rrq("f"))
			p, _, err := c.recv(10 * time.Second)
			require.NoError(t, err)
			assert.Equal(t, "data", string(p[4:]))
			cancel()
			require.NoError(t, <-done)
		}
		c := newRawClient(t, conn.LocalAddr().String())
		c.send([]byte("after"))
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		buf := make([]byte, 16)
		n, _, err := conn.ReadFrom(buf)
		require.NoError(t, err, "single=%v: the socket stays open and readable", single)
		assert.Equal(t, "after", string(buf[:n]))
		conn.Close()
	}
}

// A Handler error is counted apart and never falls back to the FS.
func TestHandlerErrorsCounted(t *testing.T) {
	srv := &Server{
		FS: fstest.MapFS{"grub.cfg": {Data: []byte("from the FS")}},
		Handler: HandlerFunc(func(context.Context, *Request) ([]byte, error) {
			return nil, errors.New("inventory unreachable")
		}),
	}
	addr := startServer(t, srv)
	newRawClient(t, addr).expectError(rrq("grub.cfg"), "server error")
	assert.EqualValues(t, 1, srv.Stats().HandlerErrors)
	assert.EqualValues(t, 1, srv.Stats().Failed)
}
