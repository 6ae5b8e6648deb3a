package netns_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/internal/netns"
)

func TestTopology(t *testing.T) {
	srv := netns.New(t)
	srv.Bridge("br0", "10.77.0.1/24")
	cli := netns.New(t)
	srv.Connect("br0", cli, "eth0", "10.77.0.2/24")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := cli.Command(ctx, "ip", "-4", "addr", "show", "eth0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "10.77.0.2/24")

	// A UDP socket opened in srv's namespace receives what cli sends over
	// the veth and bridge.
	var conn net.PacketConn
	require.NoError(t, srv.Do(func() error {
		var err error
		conn, err = net.ListenPacket("udp4", "10.77.0.1:9999")
		return err
	}))
	defer conn.Close()
	// The host namespace must not have the address.
	_, err = net.ListenPacket("udp4", "10.77.0.1:9999")
	require.Error(t, err, "address leaked into the host namespace")

	send := cli.Command(ctx, "bash", "-c", "echo hello > /dev/udp/10.77.0.1/9999")
	if _, lerr := send.CombinedOutput(); lerr != nil {
		t.Logf("send: %v", lerr)
	}
	buf := make([]byte, 100)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, from, err := conn.ReadFrom(buf)
	require.NoError(t, err)
	require.Equal(t, "hello", strings.TrimSpace(string(buf[:n])))
	require.True(t, strings.HasPrefix(from.String(), "10.77.0.2:"), from.String())
}
