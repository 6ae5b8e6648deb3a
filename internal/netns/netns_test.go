//go:build linux

package netns_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
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

func TestVethAndTap(t *testing.T) {
	ns := netns.New(t)
	ns.Bridge("br0", "10.78.0.1/24")
	peer := ns.Veth("v0", "br0", "10.78.0.2/24")
	ns.Tap("tap0", "br0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, "ip", "-o", "link", "show", "master", "br0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), peer+"@v0")
	require.Contains(t, string(out), "tap0")
	out, err = ns.Command(ctx, "ip", "-4", "-o", "addr", "show", "v0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "10.78.0.2/24")
}

func TestCommandKilledWhenContextEnds(t *testing.T) {
	ns := netns.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.Command(ctx, "sleep", "60")
	require.NoError(t, cmd.Start())
	cancel()
	require.Error(t, cmd.Wait())
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	require.Equal(t, syscall.SIGKILL, ws.Signal(), "sleep was not killed")
}

// A program's children die with it: `sh -c 'sleep 60 & wait'` leaves no
// sleep behind once the context ends.
func TestCommandKillsProcessGroup(t *testing.T) {
	ns := netns.New(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.Command(ctx, "sh", "-c", "sleep 60 & echo $! > "+dir+"/pid; wait")
	require.NoError(t, cmd.Start())
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(dir + "/pid")
		if err != nil {
			return false
		}
		_, err = fmt.Sscan(string(b), &pid)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	cancel()
	_ = cmd.Wait()
	require.Eventually(t, func() bool {
		return syscall.Kill(pid, 0) == syscall.ESRCH
	}, 10*time.Second, 20*time.Millisecond, "child sleep %d survived", pid)
}
