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

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

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
			t.Cleanup(func() { conn.Close() }) // after Serve returned
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
			t.Cleanup(func() { conn.Close() }) // after Serve returned
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
