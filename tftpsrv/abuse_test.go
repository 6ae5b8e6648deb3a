package tftpsrv

import (
	"context"
	"encoding/binary"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// silentResult is what a client that sends one request and never answers
// received from the server.
type silentResult struct {
	pkts, bytes int
	ops         []uint16 // opcode of each packet
	blocks      []uint16 // block number of each DATA packet
	oacks       []map[string]string
	tr          Transfer
}

// silentClient sends req from a fresh socket on 127.0.0.1 and never sends
// anything else, like a victim whose address a forged request named. It
// counts what arrives until the server reports the transfer's end (waiting
// at most within), then collects what is still queued.
func silentClient(t *testing.T, log *transferLog, addr string, req []byte, within time.Duration) silentResult {
	t.Helper()
	c := newRawClient(t, addr)
	me := c.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	c.send(req)
	var res silentResult
	ended := make(chan Transfer, 1)
	go func() {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			for _, tr := range log.all() {
				if tr.Client == me {
					ended <- tr
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(ended)
	}()
	buf := make([]byte, 65536)
	count := func(n int) {
		p := buf[:n]
		res.pkts++
		res.bytes += n
		op := binary.BigEndian.Uint16(p)
		res.ops = append(res.ops, op)
		switch op {
		case opDATA:
			res.blocks = append(res.blocks, binary.BigEndian.Uint16(p[2:]))
		case opOACK:
			res.oacks = append(res.oacks, parseOACK(p))
		}
	}
	for {
		select {
		case tr, ok := <-ended:
			require.True(t, ok, "the transfer to a silent client did not end within %v (%d packets so far)", within, res.pkts)
			res.tr = tr
			// Whatever the server sent before it gave up is queued in
			// the socket by now.
			for {
				c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				n, _, err := c.conn.ReadFromUDP(buf)
				if err != nil {
					return res
				}
				count(n)
			}
		default:
		}
		c.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, _, err := c.conn.ReadFromUDP(buf)
		if err == nil && n >= 4 {
			count(n)
		}
	}
}

// TestSilentClientAmplification is the reflection attack: a forged request
// names a victim that never answers. The victim must receive at most a few
// packets (the first one and two resends), nothing sent ahead, and the
// transfer must give up within seconds, freeing its slot. Before the fix a
// 16-byte request without options made the server send 48 DATA packets
// (24 KB) over 22 s, and a request with "timeout 255" held the slot for
// about 93 minutes.
func TestSilentClientAmplification(t *testing.T) {
	data := strings.Repeat("z", 512*100)
	cases := []struct {
		name string
		req  []byte
		op   uint16
	}{
		{"no options", rrq("f"), opDATA},
		{"windowsize and timeout 255", rrq("f", "blksize", "1468", "windowsize", "64", "tsize", "0", "timeout", "255"), opOACK},
		{"blksize only", rrq("f", "blksize", "1468"), opOACK},
	}
	for _, single := range []bool{false, true} {
		for _, tc := range cases {
			name := tc.name
			if single {
				name += ", single port"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var log transferLog
				// The default Timeout and Retries: what a real
				// deployment does.
				srv := &Server{FS: fstest.MapFS{"f": {Data: []byte(data)}}, SinglePort: single, OnTransfer: log.add}
				addr := startServer(t, srv)
				res := silentClient(t, &log, addr, tc.req, 60*time.Second)
				t.Logf("%d-byte request: %d packets, %d bytes to the silent client (%.0fx), slot held %v",
					len(tc.req), res.pkts, res.bytes, float64(res.bytes)/float64(len(tc.req)), res.tr.Duration.Round(time.Millisecond))
				require.ErrorIs(t, res.tr.Err, ErrTimeout)
				require.Positive(t, res.pkts)
				require.LessOrEqual(t, res.pkts, 3, "packets sent to an address that never acknowledged: %v", res.ops)
				for _, op := range res.ops {
					require.Equal(t, tc.op, op, "only the first packet is sent, and resent: %v %v", res.ops, res.blocks)
				}
				for _, b := range res.blocks {
					require.Equal(t, uint16(1), b, "no block beyond the first before an ACK: %v", res.blocks)
				}
				for _, o := range res.oacks {
					require.NotContains(t, o, "timeout", "a timeout above MaxTimeout is refused")
				}
				require.Eventually(t, func() bool { return srv.Stats().Active == 0 }, 10*time.Second, 10*time.Millisecond)
			})
		}
	}
}

// TestTimeoutOption checks the RFC 2349 timeout option against MaxTimeout:
// a value up to it is echoed and used, a larger one is refused (left out of
// the OACK; the RFC allows no other answer) and the server's Timeout
// applies.
func TestTimeoutOption(t *testing.T) {
	fsys := fstest.MapFS{"f": {Data: []byte("hello")}}
	addr := startServer(t, &Server{FS: fsys})
	res := lockstepFetch(t, addr, "f", nil, "timeout", "5", "tsize", "0")
	require.True(t, res.ok, res.error)
	assert.Equal(t, map[string]string{"timeout": "5", "tsize": "5"}, res.oack)
	res = lockstepFetch(t, addr, "f", nil, "timeout", "6", "tsize", "0")
	require.True(t, res.ok, res.error)
	assert.Equal(t, map[string]string{"tsize": "5"}, res.oack, "above DefaultMaxTimeout: refused")

	addr = startServer(t, &Server{FS: fsys, MaxTimeout: 30 * time.Second})
	res = lockstepFetch(t, addr, "f", nil, "timeout", "30")
	require.True(t, res.ok, res.error)
	assert.Equal(t, map[string]string{"timeout": "30"}, res.oack)
	res = lockstepFetch(t, addr, "f", nil, "timeout", "31", "blksize", "512")
	require.True(t, res.ok, res.error)
	assert.Equal(t, map[string]string{"blksize": "512"}, res.oack)

	addr = startServer(t, &Server{FS: fsys, MaxTimeout: -1})
	res = lockstepFetch(t, addr, "f", nil, "timeout", "1", "blksize", "512")
	require.True(t, res.ok, res.error)
	assert.Equal(t, map[string]string{"blksize": "512"}, res.oack, "MaxTimeout < 0 refuses the option")
}

// TestSendAheadAfterFirstAck checks that a lockstep client gets blocks sent
// ahead once it has acknowledged block 1 (or the OACK), so proving it asked
// costs it one round trip and nothing more.
func TestSendAheadAfterFirstAck(t *testing.T) {
	data := strings.Repeat("w", 512*30)
	for _, opts := range [][]string{nil, {"blksize", "512"}} {
		var log transferLog
		srv := &Server{FS: fstest.MapFS{"f": {Data: []byte(data)}}, OnTransfer: log.add}
		addr := startServer(t, srv)
		res := lockstepFetch(t, addr, "f", nil, opts...)
		require.True(t, res.ok, res.error)
		require.Equal(t, data, string(res.data))
		tr := log.waitFor(t, func(tr Transfer) bool { return true }, 5*time.Second)
		require.NoError(t, tr.Err)
		require.Equal(t, 8, tr.Window, "options %v: blocks in flight after the first ACK", opts)
		require.Zero(t, tr.Retransmits)
	}
}

// TestDuplicateAcksDoNotKeepTransferAlive sends a windowsize transfer's
// first ACK over and over. Each duplicate used to resend the whole window
// and push the timeout back, so a client (or, in single-port mode, anyone
// forging its address) could keep a transfer alive and amplified forever.
// Now only the first duplicate for a block goes back; the transfer ends
// after its retries while the duplicates keep coming.
func TestDuplicateAcksDoNotKeepTransferAlive(t *testing.T) {
	data := strings.Repeat("d", 512*40)
	for _, single := range []bool{false, true} {
		var log transferLog
		srv := &Server{FS: fstest.MapFS{"f": {Data: []byte(data)}}, Timeout: 50 * time.Millisecond, Retries: 2,
			SinglePort: single, OnTransfer: log.add}
		addr := startServer(t, srv)
		c := newRawClient(t, addr)
		c.send(rrq("f", "windowsize", "8", "blksize", "512"))
		p, from, err := c.recv(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, uint16(opOACK), binary.BigEndian.Uint16(p))
		ack0 := []byte{0, 4, 0, 0}
		received := 0
		ended := false
		// Bounded: at most 2000 duplicates, 5 ms apart (10 s).
		for i := 0; i < 2000 && !ended; i++ {
			c.conn.WriteToUDP(ack0, from)
			c.conn.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
			for {
				if _, _, err := c.conn.ReadFromUDP(make([]byte, 1500)); err != nil {
					break
				}
				received++
			}
			ended = len(log.all()) > 0
		}
		require.True(t, ended, "single=%v: the transfer outlived 2000 duplicate ACKs (%d packets received)", single, received)
		tr := log.all()[0]
		require.ErrorIs(t, tr.Err, ErrTimeout)
		// The first window, one go-back for the duplicates, and one
		// window per timeout.
		require.LessOrEqual(t, received, 8*(1+1+srv.Retries), "single=%v", single)
	}
}

// TestNonRegularFilesRefused puts a FIFO, a socket and a device node under
// the root: each is refused before it is opened (opening a FIFO blocks until
// a writer comes, pinning an OS thread per request), answered promptly, and
// leaves no goroutine behind.
func TestNonRegularFilesRefused(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ok"), []byte("ok"), 0o644))
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "sub", "fifo"), 0o644))
	require.NoError(t, os.Symlink("sub/fifo", filepath.Join(dir, "fifo-link")))
	names := []string{"fifo", "sub/fifo", "fifo-link", "sub"}
	if l, err := net.Listen("unix", filepath.Join(dir, "sock")); err == nil {
		defer l.Close()
		names = append(names, "sock")
	}
	if syscall.Mknod(filepath.Join(dir, "zero"), syscall.S_IFCHR|0o644, int(unix.Mkdev(1, 5))) == nil {
		names = append(names, "zero")
	}
	releaseFIFOs := func() {
		// If a request opened a FIFO anyway, a writer releases it, so a
		// failure is reported rather than hanging the test.
		for _, p := range []string{fifo, filepath.Join(dir, "sub", "fifo")} {
			if f, err := os.OpenFile(p, os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		}
	}
	root, err := DirFS(dir)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		fsys fs.FS
	}{{"os.DirFS", os.DirFS(dir)}, {"DirFS", root}} {
		t.Run(tc.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			var log transferLog
			srv := &Server{FS: tc.fsys, OnTransfer: log.add}
			conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, conn) }()
			t.Cleanup(func() {
				cancel()
				select {
				case err := <-done:
					require.NoError(t, err)
				case <-time.After(30 * time.Second):
					t.Error("Serve did not return 30s after cancel")
				}
			})
			t.Cleanup(releaseFIFOs) // runs first
			serving := base + 1     // the Serve call

			c := newRawClient(t, conn.LocalAddr().String())
			for _, name := range names {
				c.expectError(rrq(name), "not a regular file")
			}
			// Twice each, and the server still serves regular files.
			for _, name := range names {
				c.expectError(rrq(name), "not a regular file")
			}
			res := lockstepFetch(t, conn.LocalAddr().String(), "ok", nil)
			require.True(t, res.ok, res.error)
			require.Equal(t, "ok", string(res.data))

			require.Eventually(t, func() bool { return srv.Stats().Active == 0 }, 10*time.Second, 5*time.Millisecond)
			waitGoroutines(t, serving, 10*time.Second)
			st := srv.Stats()
			require.Equal(t, uint64(2*len(names)), st.Refused)
			for _, tr := range log.all() {
				if tr.Filename != "ok" {
					require.ErrorIs(t, tr.Err, ErrNotRegular, "%+v", tr)
					require.Equal(t, int64(-1), tr.Size)
				}
			}
		})
	}
}

// netnsRunner runs functions on one OS thread that lives in a network
// namespace of its own (lo up, nothing else), so a test can use several
// loopback source addresses without touching the host's network. Sockets
// created by a function it runs belong to that namespace. Serve must be
// run by it too: it opens the per-transfer sockets.
type netnsRunner struct{ fns chan func() }

// newNetnsRunner creates the namespace; it is removed when the test ends
// and the sockets created in it are closed.
func newNetnsRunner(t *testing.T) *netnsRunner {
	t.Helper()
	r := &netnsRunner{fns: make(chan func())}
	ready := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it exits with the goroutine and
		// takes the namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- err
			return
		}
		ready <- loUp()
		for fn := range r.fns {
			fn()
		}
	}()
	if err := <-ready; err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() { close(r.fns) })
	return r
}

// do runs fn in the namespace and waits for it.
func (r *netnsRunner) do(fn func()) {
	done := make(chan struct{})
	r.fns <- func() { defer close(done); fn() }
	<-done
}

// start runs fn in the namespace without waiting; nothing else can run
// there until it returns.
func (r *netnsRunner) start(fn func()) { r.fns <- fn }

func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// TestFloodFromOneSource floods the server with read requests from one
// address that never acknowledges (as a spoofed flood naming one victim
// would) and checks a second address is still served: a source gets at most
// MaxTransfersPerClient slots, the rest of its requests an error. Before the
// limit the flood took every slot and the second client got "server busy".
// It runs in a network namespace of its own to have two source addresses.
func TestFloodFromOneSource(t *testing.T) {
	ns := newNetnsRunner(t)
	data := strings.Repeat("f", 512*20+1)
	for _, single := range []bool{false, true} {
		t.Run(map[bool]string{false: "per-transfer sockets", true: "single port"}[single], func(t *testing.T) {
			// A long Timeout keeps the flood's transfers alive while
			// the test looks at them.
			srv := &Server{FS: fstest.MapFS{"f": {Data: []byte(data)}}, MaxTransfers: 40, SinglePort: single,
				Timeout: 5 * time.Second}
			var (
				conn    *net.UDPConn
				flood   []*net.UDPConn
				other   *net.UDPConn
				lerr    error
				flooder = netip.MustParseAddr("127.0.0.1")
			)
			ns.do(func() {
				if conn, lerr = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); lerr != nil {
					return
				}
				enablePacketInfo(conn)
				for range 50 {
					c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(flooder, 0)))
					if err != nil {
						lerr = err
						return
					}
					flood = append(flood, c)
				}
				other, lerr = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
			})
			require.NoError(t, lerr)
			for _, c := range append(flood, other) {
				t.Cleanup(func() { c.Close() })
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			ns.start(func() { done <- srv.Serve(ctx, conn) })
			t.Cleanup(func() {
				cancel()
				select {
				case err := <-done:
					require.NoError(t, err)
				case <-time.After(30 * time.Second):
					t.Error("Serve did not return 30s after cancel")
				}
			})
			to := conn.LocalAddr().(*net.UDPAddr)
			// 200 requests: 4 rounds of one from each of 50 ports. In
			// single-port mode the repeats from a port whose transfer
			// runs go to that transfer: they are no requests.
			requests := uint64(200)
			if single {
				requests = DefaultMaxTransfersPerClient + 4*(50-DefaultMaxTransfersPerClient)
			}
			for i := range 200 {
				_, err := flood[i%len(flood)].WriteToUDP(rrq("f"), to)
				require.NoError(t, err)
			}
			require.Eventually(t, func() bool { return srv.Stats().Requests == requests }, 10*time.Second, 5*time.Millisecond)
			st := srv.Stats()
			require.Equal(t, int64(DefaultMaxTransfersPerClient), st.Active, "slots held by one source")
			require.Equal(t, requests-uint64(DefaultMaxTransfersPerClient), st.ClientLimited)
			require.Zero(t, st.Busy)

			// The second address is served while the flood holds its slots.
			c := &rawClient{t: t, conn: other, srv: to}
			c.send(rrq("f"))
			var got []byte
			for {
				p, from, err := c.recv(5 * time.Second)
				require.NoError(t, err)
				require.Equal(t, uint16(opDATA), binary.BigEndian.Uint16(p), "%q", p)
				got = append(got, p[4:]...)
				other.WriteToUDP([]byte{0, opACK, p[2], p[3]}, from)
				if len(p)-4 < 512 {
					break
				}
			}
			require.Equal(t, data, string(got))
			require.Zero(t, srv.Stats().Busy, "the second source was never refused")
		})
	}
}
