package dhcpsrv_test

// Tests against real clients and servers (dhclient, busybox udhcpc,
// perfdhcp, dnsmasq) inside network namespaces the tests create; see
// internal/netns. They skip when not root or a peer is missing.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/netns"
)

// lab is a server namespace with bridge br0 (10.99.0.1/24) and client
// namespaces attached to it.
type lab struct {
	t   *testing.T
	srv *netns.NS
}

func newLab(t *testing.T) *lab {
	srv := netns.New(t)
	srv.Bridge("br0", "10.99.0.1/24")
	return &lab{t: t, srv: srv}
}

// client adds a namespace whose eth0 (with MAC mac, address cidr if not
// empty) is plugged into br0.
func (l *lab) client(mac, cidr string) *netns.NS {
	c := netns.New(l.t)
	l.srv.Connect("br0", c, "eth0", cidr)
	if mac != "" {
		c.IP("link", "set", "eth0", "address", mac)
	}
	return c
}

// serve runs s on br0 inside the server namespace until the test ends (or
// the returned stop is called).
func (l *lab) serve(s *dhcpsrv.Server) (stop func()) {
	t := l.t
	s.Interface = "br0"
	if !s.ServerIP.IsValid() {
		s.ServerIP = serverIP
	}
	ctx, cancel := context.WithCancel(context.Background())
	var conns []net.PacketConn
	ports := []int{dhcpsrv.ServerPort}
	if s.ProxyDHCP {
		ports = append(ports, dhcpsrv.PXEPort)
	}
	require.NoError(t, l.srv.Do(func() error {
		for _, p := range ports {
			c, err := dhcpsrv.ListenUDP(ctx, "br0", p)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	}))
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			if err := s.Serve(ctx, c); err != nil {
				t.Errorf("Serve: %v", err)
			}
			c.Close()
		})
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func labServer(mod func(*dhcpsrv.Server)) *dhcpsrv.Server {
	s := &dhcpsrv.Server{
		ServerIP: serverIP,
		Subnets: []dhcpsrv.Subnet{{
			Prefix:    netip.MustParsePrefix("10.99.0.0/24"),
			Ranges:    []dhcpsrv.Range{{From: netip.MustParseAddr("10.99.0.100"), To: netip.MustParseAddr("10.99.0.200")}},
			Router:    serverIP,
			DNS:       []netip.Addr{serverIP},
			Domain:    "lab",
			LeaseTime: time.Hour,
		}},
	}
	if mod != nil {
		mod(s)
	}
	return s
}

// envFile reads KEY=VALUE lines written by a client's hook script.
func envFile(t *testing.T, path string, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "END\n") {
			env := map[string]string{}
			for _, line := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok {
					env[k] = strings.Trim(v, "'")
				}
			}
			return env
		}
		if time.Now().After(deadline) {
			t.Fatalf("client wrote no lease to %s within %v", path, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755))
	return p
}

// udhcpc runs busybox udhcpc once in c and returns its "bound" environment
// (ip, siaddr, boot_file, hostname …).
func udhcpc(t *testing.T, c *netns.NS, extra ...string) map[string]string {
	t.Helper()
	netns.Need(t, "busybox")
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	script := writeScript(t, dir, "script", fmt.Sprintf("[ \"$1\" = bound ] && { env > %s.tmp; echo END >> %[1]s.tmp; mv %[1]s.tmp %[1]s; }\nexit 0\n", out))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-A", "1", "-s", script}, extra...)
	b, err := c.Command(ctx, "busybox", args...).CombinedOutput()
	require.NoError(t, err, "udhcpc: %s", b)
	return envFile(t, out, time.Second)
}

func TestUdhcpcGetsLeaseAndUEFIBootFile(t *testing.T) {
	l := newLab(t)
	var leased []dhcpsrv.Lease
	var mu sync.Mutex
	s := labServer(func(s *dhcpsrv.Server) {
		s.OnLease = func(x dhcpsrv.Lease) { mu.Lock(); leased = append(leased, x); mu.Unlock() }
	})
	l.serve(s)
	c := l.client("52:54:00:aa:00:01", "")
	env := udhcpc(t, c, "-x", "0x5d:0007", "-V", "PXEClient:Arch:00007:UNDI:003016")
	assert.Equal(t, "10.99.0.100", env["ip"])
	assert.Equal(t, "255.255.255.0", env["subnet"])
	assert.Equal(t, "10.99.0.1", env["router"])
	assert.Equal(t, "lab", env["domain"])
	assert.Equal(t, "grub/x86_64-efi/core.efi", env["boot_file"])
	assert.Equal(t, "10.99.0.1", env["siaddr"])
	assert.Equal(t, "10.99.0.1", env["serverid"])

	lease, ok, _ := s.Lease(context.Background(), hwaddr.MustParse("52:54:00:aa:00:01"))
	require.True(t, ok)
	assert.Equal(t, "10.99.0.100", lease.IP.String())
	assert.Equal(t, dhcpsrv.ArchEFIx64, lease.Arch)
	mu.Lock()
	assert.Len(t, leased, 1)
	mu.Unlock()
}

func TestDhclientGetsLeaseAndBIOSBootFile(t *testing.T) {
	netns.Need(t, "dhclient")
	l := newLab(t)
	l.serve(labServer(func(s *dhcpsrv.Server) { s.NextServer = netip.MustParseAddr("10.99.0.5") }))
	c := l.client("52:54:00:aa:00:02", "")
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	conf := filepath.Join(dir, "dhclient.conf")
	require.NoError(t, os.WriteFile(conf, []byte(`option mb-arch code 93 = unsigned integer 16;
send mb-arch 0;
send vendor-class-identifier "PXEClient:Arch:00000:UNDI:002001";
request subnet-mask, routers, domain-name, domain-name-servers, host-name, tftp-server-name, bootfile-name;
`), 0o644))
	// dhclient gives its script a fresh environment: the output path is
	// written into the script.
	script := writeScript(t, dir, "script", fmt.Sprintf("case \"$reason\" in BOUND|REBOOT) env > %s.tmp; echo END >> %[1]s.tmp; mv %[1]s.tmp %[1]s;; esac\nexit 0\n", out))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := c.Command(ctx, "dhclient", "-d", "-1", "-v", "-cf", conf, "-lf", filepath.Join(dir, "leases"),
		"-pf", filepath.Join(dir, "pid"), "-sf", script, "eth0")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	defer func() { cancel(); _ = cmd.Wait() }()
	env := envFile(t, out, 20*time.Second)
	t.Logf("dhclient env: new_ip_address=%s new_filename=%s new_tftp_server_name=%s", env["new_ip_address"], env["new_filename"], env["new_tftp_server_name"])
	assert.Equal(t, "10.99.0.100", env["new_ip_address"])
	assert.Equal(t, "grub/i386-pc/core.0", env["new_filename"], "file field")
	assert.Equal(t, "10.99.0.5", env["new_tftp_server_name"], "option 66")
	assert.Equal(t, "10.99.0.5", env["new_next_server"], "siaddr")
	assert.Equal(t, "lab", env["new_domain_name"])
	assert.Equal(t, "10.99.0.1", env["new_dhcp_server_identifier"])
}

func TestUdhcpcReservationGivesFixedIP(t *testing.T) {
	l := newLab(t)
	m := hwaddr.MustParse("52:54:00:aa:00:03")
	l.serve(labServer(func(s *dhcpsrv.Server) {
		s.Reservations = dhcpsrv.StaticReservations{m: {IP: netip.MustParseAddr("10.99.0.33"), Hostname: "mp"}}
	}))
	env := udhcpc(t, l.client(m.String(), ""))
	assert.Equal(t, "10.99.0.33", env["ip"])
	assert.Equal(t, "mp", env["hostname"])
	// a client without reservation gets a pool address
	env = udhcpc(t, l.client("52:54:00:aa:00:04", ""))
	assert.Equal(t, "10.99.0.100", env["ip"])
}

func TestUdhcpcRestartKeepsLeases(t *testing.T) {
	l := newLab(t)
	dir := t.TempDir()
	j, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	stop := l.serve(labServer(func(s *dhcpsrv.Server) { s.Leases = j }))
	c1 := l.client("52:54:00:aa:00:05", "")
	first := udhcpc(t, c1)["ip"]
	require.NotEmpty(t, first)
	stop()
	require.NoError(t, j.Close())

	j2, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	t.Cleanup(func() { j2.Close() })
	l.serve(labServer(func(s *dhcpsrv.Server) { s.Leases = j2 }))
	// another machine does not get the first one's address ...
	other := udhcpc(t, l.client("52:54:00:aa:00:06", ""))["ip"]
	assert.NotEqual(t, first, other)
	// ... and the first machine gets it back without asking for it
	assert.Equal(t, first, udhcpc(t, c1)["ip"])
}

// proxyDHCP beside dnsmasq: dnsmasq (in its own namespace on the same
// bridge) hands out addresses without boot options; dhcpsrv in proxy mode
// answers PXE clients with boot options only and ignores plain clients.
func TestProxyDHCPBesideDnsmasq(t *testing.T) {
	netns.Need(t, "dnsmasq", "busybox")
	l := newLab(t)
	s := labServer(func(s *dhcpsrv.Server) { s.ProxyDHCP = true })
	l.serve(s)
	dns := l.client("", "10.99.0.2/24")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dm := dns.Command(ctx, "dnsmasq", "--keep-in-foreground", "--port=0", "--interface=eth0", "--bind-interfaces",
		"--dhcp-range=10.99.0.150,10.99.0.160,255.255.255.0,1h", "--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--pid-file="+filepath.Join(dir, "pid"), "--no-resolv", "--no-hosts", "--log-dhcp", "--log-facility=-", "--no-ping")
	var dmlog strings.Builder
	dm.Stdout, dm.Stderr = &dmlog, &dmlog
	require.NoError(t, dm.Start())
	defer func() { cancel(); _ = dm.Wait(); t.Logf("dnsmasq log:\n%s", dmlog.String()) }()
	time.Sleep(300 * time.Millisecond)

	// A plain client gets its address from dnsmasq; dhcpsrv stays silent.
	env := udhcpc(t, l.client("52:54:00:aa:00:07", ""))
	assert.Equal(t, "10.99.0.2", env["serverid"])
	assert.Contains(t, env["ip"], "10.99.0.15")
	assert.Empty(t, env["boot_file"])

	// A PXE client broadcasting a DISCOVER gets two offers: an address
	// from dnsmasq and boot options (no address) from dhcpsrv.
	pxe := l.client("52:54:00:aa:00:08", "")
	hw, _ := net.ParseMAC("52:54:00:aa:00:08")
	var offers []*dhcpv4.DHCPv4
	require.NoError(t, pxe.Do(func() error {
		conn, err := dhcpsrv.ListenUDP(ctx, "eth0", dhcpsrv.ClientPort)
		if err != nil {
			return err
		}
		defer conn.Close()
		d, err := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)), dhcpv4.WithBroadcast(true))
		if err != nil {
			return err
		}
		// retransmit like firmware does until both servers answered
		byServer := map[string]*dhcpv4.DHCPv4{}
		for try := 0; try < 6 && len(byServer) < 2; try++ {
			if _, err := conn.WriteTo(d.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpsrv.ServerPort}); err != nil {
				return err
			}
			for _, o := range readReplies(conn, d.TransactionID, time.Second, 2) {
				byServer[o.ServerIdentifier().String()] = o
			}
		}
		for _, o := range byServer {
			offers = append(offers, o)
		}
		return nil
	}))
	require.Len(t, offers, 2, "want one offer from dnsmasq and one from dhcpsrv")
	var fromDnsmasq, fromProxy *dhcpv4.DHCPv4
	for _, o := range offers {
		if o.ServerIdentifier().String() == "10.99.0.1" {
			fromProxy = o
		} else {
			fromDnsmasq = o
		}
	}
	require.NotNil(t, fromProxy)
	require.NotNil(t, fromDnsmasq)
	assert.True(t, fromProxy.YourIPAddr.IsUnspecified(), "proxyDHCP offers no address")
	assert.Equal(t, "grub/x86_64-efi/core.efi", fromProxy.BootFileName)
	assert.Equal(t, "10.99.0.1", fromProxy.ServerIPAddr.String())
	assert.Equal(t, "PXEClient", fromProxy.ClassIdentifier())
	assert.Contains(t, fromDnsmasq.YourIPAddr.String(), "10.99.0.15")

	// With the address from dnsmasq, the PXE client asks the boot server
	// on port 4011 and gets an ACK with the boot file, unicast.
	pxe.IP("addr", "add", fromDnsmasq.YourIPAddr.String()+"/24", "dev", "eth0")
	var ack *dhcpv4.DHCPv4
	require.NoError(t, pxe.Do(func() error {
		conn, err := net.ListenPacket("udp4", fromDnsmasq.YourIPAddr.String()+":0")
		if err != nil {
			return err
		}
		defer conn.Close()
		r, err := dhcpv4.NewRequestFromOffer(fromProxy, dhcpv4.WithClientIP(fromDnsmasq.YourIPAddr),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
		if err != nil {
			return err
		}
		if _, err := conn.WriteTo(r.ToBytes(), &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1), Port: dhcpsrv.PXEPort}); err != nil {
			return err
		}
		if rs := readReplies(conn, r.TransactionID, 3*time.Second, 1); len(rs) == 1 {
			ack = rs[0]
		}
		return nil
	}))
	require.NotNil(t, ack, "no answer on port 4011")
	assert.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	assert.Equal(t, "grub/x86_64-efi/core.efi", ack.BootFileName)
	assert.True(t, ack.YourIPAddr.IsUnspecified())
	_, leased, _ := s.Lease(context.Background(), hwaddr.MAC(hw))
	assert.False(t, leased, "proxyDHCP stores no lease")
}

// readReplies collects up to n replies with transaction id xid.
func readReplies(conn net.PacketConn, xid dhcpv4.TransactionID, wait time.Duration, n int) []*dhcpv4.DHCPv4 {
	var out []*dhcpv4.DHCPv4
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for len(out) < n {
		_ = conn.SetReadDeadline(deadline)
		k, _, err := conn.ReadFrom(buf)
		if err != nil {
			return out
		}
		m, err := dhcpv4.FromBytes(buf[:k])
		if err == nil && m.OpCode == dhcpv4.OpcodeBootReply && m.TransactionID == xid {
			out = append(out, m)
		}
	}
	return out
}

var perfAcks = regexp.MustCompile(`(?s)REQUEST-ACK\*+\s*sent packets: (\d+)\s*received packets: (\d+)`)

// Relay: perfdhcp acts as a relay agent whose address (giaddr 10.98.0.1)
// is in a second subnet; the server must lease from that subnet and answer
// the relay.
func TestRelayWithPerfdhcp(t *testing.T) {
	netns.Need(t, "perfdhcp")
	l := newLab(t)
	l.srv.IP("route", "add", "10.98.0.0/24", "dev", "br0")
	store := dhcpsrv.NewMemoryStore()
	s := labServer(func(s *dhcpsrv.Server) {
		s.Leases = store
		s.Subnets = append(s.Subnets, dhcpsrv.Subnet{
			Prefix: netip.MustParsePrefix("10.98.0.0/24"),
			Ranges: []dhcpsrv.Range{{From: netip.MustParseAddr("10.98.0.100"), To: netip.MustParseAddr("10.98.0.199")}},
			Router: netip.MustParseAddr("10.98.0.1"),
		})
	})
	l.serve(s)
	relay := l.client("", "10.99.0.2/24")
	relay.IP("addr", "add", "10.98.0.1/24", "dev", "eth0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := relay.Command(ctx, "perfdhcp", "-4", "-l", "10.98.0.1", "-r", "100", "-n", "30", "-R", "30", "-W", "500000", "10.99.0.1").CombinedOutput()
	require.NoError(t, err, "%s", out)
	m := perfAcks.FindSubmatch(out)
	require.NotNil(t, m, "%s", out)
	assert.NotEqual(t, "0", string(m[2]), "perfdhcp got no ACK:\n%s", out)
	leases, err := store.Leases()
	require.NoError(t, err)
	require.NotEmpty(t, leases)
	for _, x := range leases {
		assert.True(t, netip.MustParsePrefix("10.98.0.0/24").Contains(x.IP), "lease %s not from the relay's subnet", x.IP)
	}
	t.Logf("perfdhcp: %s ACKs of %s requests; %d leases", m[2], m[1], len(leases))
}

var ackLine = regexp.MustCompile(`^ACK (\S+) (\S+)$`)

// scanAcks reads "ACK mac ip" lines into acks until r ends; "ready" is
// signalled on ready.
func scanAcks(sc *bufio.Scanner, ready chan<- struct{}, record func(mac, ip string)) {
	for sc.Scan() {
		line := sc.Text()
		if line == "ready" {
			close(ready)
			continue
		}
		if m := ackLine.FindStringSubmatch(line); m != nil {
			record(m[1], m[2])
		}
	}
}

// Pool exhaustion under real load: 60 perfdhcp clients, 10 addresses. The
// server hands out exactly 10 leases, answers the rest with silence (no
// OFFER) or NAK, keeps running, and serves a new client once a lease is
// released.
func TestPoolExhaustionWithPerfdhcp(t *testing.T) {
	netns.Need(t, "perfdhcp", "busybox")
	l := newLab(t)
	store := dhcpsrv.NewMemoryStore()
	s := labServer(func(s *dhcpsrv.Server) {
		s.Leases = store
		s.Subnets[0].Ranges = []dhcpsrv.Range{{From: netip.MustParseAddr("10.99.0.100"), To: netip.MustParseAddr("10.99.0.109")}}
	})
	l.serve(s)
	relay := l.client("", "10.99.0.2/24")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// perfdhcp exits with status 3 when requests went unanswered: expected.
	out, _ := relay.Command(ctx, "perfdhcp", "-4", "-l", "eth0", "-r", "200", "-n", "60", "-R", "60", "-W", "500000", "10.99.0.1").CombinedOutput()
	require.Contains(t, string(out), "DISCOVER-OFFER", "perfdhcp did not run: %s", out)
	leases, err := store.Leases()
	require.NoError(t, err)
	assert.Len(t, leases, 10, "every address leased once")
	seen := map[hwaddr.MAC]bool{}
	for _, x := range leases {
		assert.False(t, seen[x.MAC], "MAC with two leases")
		seen[x.MAC] = true
	}
	st := s.Stats()
	assert.Positive(t, st.PoolExhausted, "%+v", st)
	assert.GreaterOrEqual(t, st.Acks, uint64(10), "%+v", st) // perfdhcp may reuse a MAC: same lease again
	t.Logf("stats after exhaustion: %+v", st)

	// A real client gets nothing now ...
	c := l.client("52:54:00:aa:00:09", "")
	b, err := c.Command(ctx, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "2", "-T", "1", "-s", "/bin/true").CombinedOutput()
	require.Error(t, err, "udhcpc got a lease from an exhausted pool: %s", b)
	// ... until a lease is released.
	victim := leases[3]
	rel, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithHwAddr(victim.MAC.HardwareAddr()),
		dhcpv4.WithClientIP(victim.IP.AsSlice()))
	require.NoError(t, err)
	s.Reply(ctx, rel)
	env := udhcpc(t, c)
	assert.Equal(t, victim.IP.String(), env["ip"])
}

// ListenAndServe binds port 67 on the interface, returns nil when its
// context ends, and fails at once on a bind error.
func TestListenAndServe(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := labServer(func(s *dhcpsrv.Server) { s.Interface = "br0"; s.ServerIP = netip.Addr{} })
	done := make(chan error, 1)
	go func() {
		_ = l.srv.Do(func() error { done <- s.ListenAndServe(ctx); return nil })
	}()
	// it serves (ServerIP taken from br0) ...
	c := l.client("52:54:00:aa:00:0a", "")
	assert.Equal(t, "10.99.0.1", udhcpc(t, c)["serverid"])

	var errBusy, errBadIf error
	require.NoError(t, l.srv.Do(func() error {
		short, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// ... a second server on the same interface fails fast ...
		errBusy = labServer(func(s *dhcpsrv.Server) { s.Interface = "br0" }).ListenAndServe(short)
		// ... and so does one on a missing interface.
		errBadIf = labServer(func(s *dhcpsrv.Server) { s.Interface = "nosuch0" }).ListenAndServe(short)
		return nil
	}))
	assert.ErrorIs(t, errBusy, syscall.EADDRINUSE)
	assert.ErrorIs(t, errBadIf, syscall.ENODEV)
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return after its context ended")
	}
}

// Listen binds before anything is served, so a caller sees a bind error
// at once and only then starts Serve; in proxyDHCP mode it opens both
// ports. Serve leaves the sockets to the caller.
func TestListenThenServe(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := labServer(func(s *dhcpsrv.Server) { s.Interface = "br0" })
	var conns []net.PacketConn
	require.NoError(t, l.srv.Do(func() (err error) { conns, err = s.Listen(ctx); return err }))
	require.Len(t, conns, 1)
	assert.Equal(t, dhcpsrv.ServerPort, conns[0].LocalAddr().(*net.UDPAddr).Port)

	var errBusy, errBadIf error
	require.NoError(t, l.srv.Do(func() error {
		_, errBusy = labServer(func(s *dhcpsrv.Server) { s.Interface = "br0" }).Listen(ctx)
		_, errBadIf = labServer(func(s *dhcpsrv.Server) { s.Interface = "nosuch0" }).Listen(ctx)
		return nil
	}))
	// proxyDHCP (in a lab of its own) opens ports 67 and 4011.
	var proxyConns []net.PacketConn
	require.NoError(t, newLab(t).srv.Do(func() (err error) {
		proxyConns, err = (&dhcpsrv.Server{Interface: "br0", ServerIP: serverIP, ProxyDHCP: true}).Listen(ctx)
		return err
	}))
	assert.ErrorIs(t, errBusy, syscall.EADDRINUSE)
	assert.ErrorIs(t, errBadIf, syscall.ENODEV)
	require.Len(t, proxyConns, 2)
	assert.Equal(t, dhcpsrv.PXEPort, proxyConns[1].LocalAddr().(*net.UDPAddr).Port)
	for _, c := range proxyConns {
		c.Close()
	}

	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conns...) }()
	c := l.client("52:54:00:aa:00:0c", "")
	assert.Equal(t, "10.99.0.1", udhcpc(t, c)["serverid"])
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	// The socket is still the caller's: open, and still holding the port.
	require.NoError(t, l.srv.Do(func() error {
		_, err := labServer(func(s *dhcpsrv.Server) { s.Interface = "br0" }).Listen(context.Background())
		assert.ErrorIs(t, err, syscall.EADDRINUSE)
		return nil
	}))
	require.NoError(t, conns[0].Close())
}

// The same attack with real programs: perfdhcp DISCOVERs from 40 MACs and
// never REQUESTs (-i), so offers hold the whole 10-address pool; busybox
// udhcpc on another machine of the link still gets an address at once.
func TestOfferFloodWithPerfdhcp(t *testing.T) {
	netns.Need(t, "perfdhcp", "busybox")
	l := newLab(t)
	s := labServer(func(s *dhcpsrv.Server) {
		s.Subnets[0].Ranges = []dhcpsrv.Range{{From: netip.MustParseAddr("10.99.0.100"), To: netip.MustParseAddr("10.99.0.109")}}
	})
	l.serve(s)
	relay := l.client("", "10.99.0.2/24")
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// perfdhcp exits with status 3 when requests went unanswered: expected.
	out, _ := relay.Command(pctx, "perfdhcp", "-4", "-l", "eth0", "-i", "-r", "100", "-R", "40", "-p", "2", "-W", "500000", "10.99.0.1").CombinedOutput()
	require.Contains(t, string(out), "DISCOVER-OFFER", "perfdhcp did not run: %s", out)
	st := s.Stats()
	require.GreaterOrEqual(t, st.Offers, uint64(10), "the flood got the whole pool offered: %+v", st)
	require.Zero(t, st.Acks, "perfdhcp -i never REQUESTs")
	t.Logf("after the flood: %+v", st)

	env := udhcpc(t, l.client("52:54:00:aa:00:0b", ""))
	ip := netip.MustParseAddr(env["ip"])
	assert.True(t, s.Subnets[0].Ranges[0].From.Compare(ip) <= 0 && ip.Compare(s.Subnets[0].Ranges[0].To) <= 0, ip)
	lease, ok, _ := s.Lease(context.Background(), hwaddr.MustParse("52:54:00:aa:00:0b"))
	require.True(t, ok)
	assert.Equal(t, ip, lease.IP)
	assert.Positive(t, s.Stats().OffersReclaimed)
}
