package sockets_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/internal/sockets"
)

// A Connected socket sends one datagram per packet, in order, whether one
// (send) or a window of them (sendmmsg, more than one batch), reads them
// back one per Read, and honours the conn's read deadline.
func TestConnected(t *testing.T) {
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer peer.Close()
	c, err := net.DialUDP("udp4", nil, peer.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	sc, err := sockets.NewConnected(c)
	require.NoError(t, err)
	defer sc.Conn().Close()

	var pkts [][]byte
	for i := range 40 {
		pkts = append(pkts, []byte(fmt.Sprintf("block %02d", i)))
	}
	require.NoError(t, sc.Send(pkts[:1]))
	require.NoError(t, sc.Send(pkts[1:]))
	buf := make([]byte, 64)
	for i := range pkts {
		require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, from, err := peer.ReadFromUDP(buf)
		require.NoError(t, err)
		require.Equal(t, pkts[i], buf[:n], "datagram %d", i)
		if i == 0 {
			// Answer to the connected socket: two datagrams, read one at a time.
			_, err = peer.WriteToUDP([]byte("ack 1"), from)
			require.NoError(t, err)
			_, err = peer.WriteToUDP([]byte("ack 2"), from)
			require.NoError(t, err)
		}
	}
	for _, want := range []string{"ack 1", "ack 2"} {
		require.NoError(t, sc.Conn().SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := sc.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, want, string(buf[:n]))
	}
	// Nothing queued: the deadline ends the wait.
	require.NoError(t, sc.Conn().SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = sc.Read(buf)
	assert.True(t, errors.Is(err, os.ErrDeadlineExceeded), "%v", err)
	// A datagram longer than the buffer is cut to it, as net.UDPConn.Read does.
	_, err = peer.WriteToUDP(bytes.Repeat([]byte("x"), 100), c.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	require.NoError(t, sc.Conn().SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := sc.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, len(buf), n)

	// Send from two goroutines at once (a transfer's error packet is sent
	// from a context's AfterFunc while the transfer sends): every packet
	// arrives whole (and -race sees no shared state).
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			for range 20 {
				assert.NoError(t, sc.Send([][]byte{[]byte(fmt.Sprintf("g%d", g)), []byte(fmt.Sprintf("g%d", g))}))
			}
		})
	}
	wg.Wait()
	got := map[string]int{}
	for range 80 {
		require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, _, err := peer.ReadFromUDP(buf)
		require.NoError(t, err)
		got[string(buf[:n])]++
	}
	assert.Equal(t, map[string]int{"g0": 40, "g1": 40}, got)
}
