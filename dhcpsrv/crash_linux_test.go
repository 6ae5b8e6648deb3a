package dhcpsrv_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/dhcpsrv/internal/daemon"
	"github.com/metalboot/metalboot/internal/netns"
)

const helperEnv = "DHCPSRV_TEST_DAEMON_ARGS"

// TestHelperDaemon is not a test: the crash test re-executes the test
// binary with DHCPSRV_TEST_DAEMON_ARGS set to run a server process.
func TestHelperDaemon(t *testing.T) {
	args := os.Getenv(helperEnv)
	if args == "" {
		t.Skip("helper process for TestKill9KeepsAckedLeases")
	}
	if err := daemon.Main(strings.Fields(args), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "daemon:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestKill9KeepsAckedLeases runs the server as a separate process under
// perfdhcp load plus a Go relay client that records every ACK it sees on
// the wire, kills it with SIGKILL at random moments several times and
// restarts it on the same journal. Every ACKed lease must survive and no
// address may ever be ACKed to two MACs: with an fsync before every ACK,
// and with JournalOptions.SyncInterval (written before the ACK, fsynced
// later), which a killed process must not lose either.
func TestKill9KeepsAckedLeases(t *testing.T) {
	netns.Need(t, "perfdhcp")
	t.Run("fsync each ACK", func(t *testing.T) { kill9KeepsAckedLeases(t, "") })
	t.Run("sync interval", func(t *testing.T) { kill9KeepsAckedLeases(t, "-sync-interval 1s ") })
}

func kill9KeepsAckedLeases(t *testing.T, extra string) {
	srv := netns.New(t)
	srv.Bridge("br0", "10.99.0.1/16")
	perf := netns.New(t)
	srv.Connect("br0", perf, "eth0", "10.99.0.2/16")
	wire := netns.New(t)
	srv.Connect("br0", wire, "eth0", "10.99.0.3/16")
	dir := t.TempDir()
	args := extra + "-i br0 -server-ip 10.99.0.1 -subnet 10.99.0.0/16,10.99.1.0,10.99.250.255 -lease-time 1h -print-acks -leases " + dir

	// The wire client acts as a relay agent at 10.99.0.3 (port 67), so it
	// needs no raw sockets: DISCOVER/REQUEST unicast, replies to giaddr.
	var conn net.PacketConn
	require.NoError(t, wire.Do(func() error {
		var err error
		conn, err = net.ListenPacket("udp4", "10.99.0.3:67")
		return err
	}))
	defer conn.Close()

	type ack struct{ mac, ip, src string }
	var (
		mu   sync.Mutex
		acks []ack
	)
	record := func(mac, ip, src string) {
		mu.Lock()
		acks = append(acks, ack{mac, ip, src})
		mu.Unlock()
	}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	var next uint16
	const rounds = 5
	deadline := time.Now().Add(45 * time.Second)
	for round := range rounds {
		if time.Now().After(deadline) {
			t.Fatalf("crash test exceeded its time budget after %d rounds", round)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := srv.Command(ctx, os.Args[0], "-test.run=^TestHelperDaemon$")
		cmd.Env = append(os.Environ(), helperEnv+"="+args)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		ready := make(chan struct{})
		scanned := make(chan struct{})
		go func() {
			scanAcks(bufio.NewScanner(stdout), ready, func(mac, ip string) { record(mac, ip, "server") })
			close(scanned)
		}()
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			cancel()
			t.Fatalf("server did not start: %s", stderr.String())
		}

		pd := perf.Command(ctx, "perfdhcp", "-4", "-l", "eth0", "-r", "400", "-R", "60000", "-p", "5", "-s", fmt.Sprint(round+1), "10.99.0.1")
		require.NoError(t, pd.Start())

		// Kill at a random moment while both loads run.
		killAt := time.Now().Add(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		for time.Now().Before(killAt) {
			next++
			m := hwaddr.MAC{0x02, 0xcc, 0, byte(round), byte(next >> 8), byte(next)}
			// A generous wait: under -race beside other packages' tests an
			// exchange (two round trips and an fsync) can take a while,
			// and a wire client that never completes one proves nothing.
			if ip, ok := wireDORA(conn, m, 2*time.Second); ok {
				record(m.String(), ip, "wire")
			}
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		<-scanned
		_ = pd.Process.Kill()
		_ = pd.Wait()
		cancel()
	}

	// The journal holds every ACKed lease, bound to its MAC.
	j, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	owner := map[string]string{} // ip -> mac over the whole run
	wireAcks, serverAcks := 0, 0
	mu.Lock()
	defer mu.Unlock()
	lastIP := map[string]string{} // mac -> last ACKed ip
	for _, a := range acks {
		if prev, ok := owner[a.ip]; ok && prev != a.mac {
			t.Errorf("address %s ACKed to two MACs: %s and %s", a.ip, prev, a.mac)
		}
		owner[a.ip] = a.mac
		lastIP[a.mac] = a.ip
		if a.src == "wire" {
			wireAcks++
		} else {
			serverAcks++
		}
	}
	lost := 0
	for mac, ip := range lastIP {
		l, err := j.Get(context.Background(), netip.MustParseAddr(ip))
		if err != nil || l.MAC.String() != mac || l.State != dhcpsrv.StateBound {
			lost++
			if lost < 10 {
				t.Errorf("ACKed lease %s -> %s not in the journal after kill -9 (got %+v, %v)", mac, ip, l, err)
			}
		}
	}
	t.Logf("%d rounds: %d ACKs seen on the wire, %d reported by the server, %d distinct leases checked, %d records in the journal, %d lost",
		rounds, wireAcks, serverAcks, len(lastIP), j.Len(), lost)
	require.Greater(t, wireAcks, 0, "the wire client never got an ACK")
	require.NoError(t, j.Close())

	// A restarted server gives a wire client its ACKed address back.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := srv.Command(ctx, os.Args[0], "-test.run=^TestHelperDaemon$")
	cmd.Env = append(os.Environ(), helperEnv+"="+args)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	ready := make(chan struct{})
	go scanAcks(bufio.NewScanner(stdout), ready, func(string, string) {})
	<-ready
	checked := 0
	for _, a := range acks {
		if a.src != "wire" || checked == 5 {
			continue
		}
		ip, ok := wireDORA(conn, hwaddr.MustParse(a.mac), time.Second)
		require.True(t, ok, "no ACK after restart for %s", a.mac)
		assert.Equal(t, lastIP[a.mac], ip, "MAC %s got another address after restart", a.mac)
		checked++
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	if err := cmd.Wait(); err != nil && !errors.As(err, new(*exec.ExitError)) {
		t.Log(err)
	}
}

// wireDORA runs DISCOVER/OFFER/REQUEST/ACK as relay agent 10.99.0.3 to
// server 10.99.0.1 and returns the ACKed address.
func wireDORA(conn net.PacketConn, m hwaddr.MAC, wait time.Duration) (string, bool) {
	server := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1), Port: dhcpsrv.ServerPort}
	d, err := dhcpv4.NewDiscovery(m.HardwareAddr(), dhcpv4.WithRelay(net.IPv4(10, 99, 0, 3)))
	if err != nil {
		return "", false
	}
	if _, err := conn.WriteTo(d.ToBytes(), server); err != nil {
		return "", false
	}
	offers := readReplies(conn, d.TransactionID, wait, 1)
	if len(offers) == 0 || offers[0].MessageType() != dhcpv4.MessageTypeOffer {
		return "", false
	}
	r, err := dhcpv4.NewRequestFromOffer(offers[0], dhcpv4.WithRelay(net.IPv4(10, 99, 0, 3)))
	if err != nil {
		return "", false
	}
	if _, err := conn.WriteTo(r.ToBytes(), server); err != nil {
		return "", false
	}
	acks := readReplies(conn, r.TransactionID, wait, 1)
	if len(acks) == 0 || acks[0].MessageType() != dhcpv4.MessageTypeAck {
		return "", false
	}
	return acks[0].YourIPAddr.String(), true
}
