package grubcfg

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestListenerNoTimeWait checks that a connection closed by the server
// through Listener leaves no TIME_WAIT socket behind, and that a large body
// still arrives whole (the reset waits for the peer's acknowledgement).
func TestListenerNoTimeWait(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss (iproute2) not installed")
	}
	body := make([]byte, 8<<20)
	_, _ = rand.Read(body)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: CloseAfterResponse(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}))}
	go func() { _ = srv.Serve(Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	// A GRUB-like client: fixed source port, reads the body slowly, never
	// closes first.
	for round := 0; round < 2; round++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 21550}}
		var c net.Conn
		for i := 0; i < 50; i++ { // the previous round's socket may still be closing on our side
			if c, err = d.Dial("tcp", ln.Addr().String()); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		require.NoError(t, err, "round %d: connect from the same source port", round)
		_, err = c.Write([]byte("GET /k HTTP/1.1\r\nHost: x\r\nUser-Agent: GRUB 2.06\r\n\r\n"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err, "round %d", round)
		assert.True(t, bytes.Equal(body, got), "round %d: body intact", round)
		assert.True(t, resp.Close, "Connection: close sent to GRUB")
		time.Sleep(700 * time.Millisecond) // net/http waits 500ms before closing
		out, err := exec.Command("ss", "-tan").CombinedOutput()
		require.NoError(t, err)
		serverSide := regexp.MustCompile(`127\.0\.0\.1:` + strconv.Itoa(port) + `\s+127\.0\.0\.1:21550`)
		assert.False(t, serverSide.Match(out), "round %d: the server still holds GRUB's 4-tuple (FIN-WAIT/TIME-WAIT):\n%s", round, out)
		c.Close()
	}
}
