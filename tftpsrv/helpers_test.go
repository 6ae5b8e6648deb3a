package tftpsrv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startServer serves srv on 127.0.0.1 on an ephemeral port and stops it when
// the test ends, checking that Serve returned nil.
func startServer(t *testing.T, srv *Server) string {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	// Before Serve starts, so that a request sent before Serve's first read
	// still carries its interface (blksize up to the loopback MTU, not the
	// 1468 used without one; see enablePacketInfo).
	enablePacketInfo(conn)
	t.Cleanup(func() { conn.Close() }) // after Serve returned: Serve leaves it open
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
	return conn.LocalAddr().String()
}

// testTree creates the served directory with the files the interop tests
// fetch, plus a secret file outside it and symlinks that try to escape.
// It returns the root and the contents by name.
func testTree(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	rng := rand.New(rand.NewPCG(1, 2))
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	files := map[string][]byte{
		"empty":                     {},
		"one-block":                 rnd(512),
		"block-minus-one":           rnd(511),
		"block-plus-one":            rnd(513),
		"three-blocks":              rnd(512 * 3),
		"blocks-1024x5":             rnd(1024 * 5),
		"blocks-1468x4":             rnd(1468 * 4),
		"grub/x86_64-efi/core.efi":  rnd(240 * 1024),
		"big.bin":                   rnd(5<<20 + 123),
		"with space/and-dash_1.txt": []byte("spaces are fine\n"),
	}
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(base, "secret"), []byte("outside the tree\n"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(base, "outdir"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(base, "outdir", "passwd"), []byte("outside too\n"), 0o644))
	// Links that must not be followed.
	require.NoError(t, os.Symlink("../secret", filepath.Join(root, "esc-relative")))
	require.NoError(t, os.Symlink(filepath.Join(base, "secret"), filepath.Join(root, "esc-absolute")))
	require.NoError(t, os.Symlink("../outdir", filepath.Join(root, "esc-dir")))
	require.NoError(t, os.Symlink("../../secret", filepath.Join(root, "grub", "esc-nested")))
	require.NoError(t, os.Symlink("loop-b", filepath.Join(root, "loop-a")))
	require.NoError(t, os.Symlink("loop-a", filepath.Join(root, "loop-b")))
	// Links that stay inside and must work.
	require.NoError(t, os.Symlink("x86_64-efi/core.efi", filepath.Join(root, "grub", "core-link.efi")))
	require.NoError(t, os.Symlink("grub/x86_64-efi", filepath.Join(root, "efi-dir")))
	files["grub/core-link.efi"] = files["grub/x86_64-efi/core.efi"]
	files["efi-dir/core.efi"] = files["grub/x86_64-efi/core.efi"]
	return root, files
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func needBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s): %v", name, map[string]string{
			"tftp": "tftp-hpa", "atftp": "atftp", "curl": "curl", "in.tftpd": "tftpd-hpa",
		}[name], err)
	}
	return p
}

// runClient runs a client command with a deadline and returns its combined
// output and error.
func runClient(t *testing.T, dir string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rawClient speaks TFTP by hand, to send what real clients never send and to
// vanish in the middle of a transfer.
type rawClient struct {
	t    *testing.T
	conn *net.UDPConn
	srv  *net.UDPAddr
}

func newRawClient(t *testing.T, addr string) *rawClient {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, srv: ua}
}

func rrq(name string, opts ...string) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 1})
	b.WriteString(name)
	b.WriteByte(0)
	b.WriteString("octet")
	b.WriteByte(0)
	for _, o := range opts {
		b.WriteString(o)
		b.WriteByte(0)
	}
	return b.Bytes()
}

func (c *rawClient) send(pkt []byte) {
	_, err := c.conn.WriteToUDP(pkt, c.srv)
	require.NoError(c.t, err)
}

// recv waits for one packet and returns it with its sender.
func (c *rawClient) recv(timeout time.Duration) ([]byte, *net.UDPAddr, error) {
	buf := make([]byte, 65536)
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.conn.ReadFromUDP(buf)
	if err != nil {
		return nil, nil, err
	}
	return buf[:n], from, nil
}

// expectError sends pkt and requires an ERROR packet whose message contains
// want.
func (c *rawClient) expectError(pkt []byte, want string) {
	c.t.Helper()
	c.send(pkt)
	p, _, err := c.recv(5 * time.Second)
	require.NoError(c.t, err)
	require.GreaterOrEqual(c.t, len(p), 5)
	require.Equal(c.t, uint16(5), binary.BigEndian.Uint16(p), "opcode of %q", p)
	require.Contains(c.t, string(p[4:]), want)
}

// waitGoroutines waits (bounded) until the goroutine count is at most want.
func waitGoroutines(t *testing.T, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines remain, want <= %d:\n%s", n, want, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// transferLog collects OnTransfer calls.
type transferLog struct {
	mu sync.Mutex
	ts []Transfer
}

func (l *transferLog) add(t Transfer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ts = append(l.ts, t)
}

func (l *transferLog) all() []Transfer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Transfer(nil), l.ts...)
}

func (l *transferLog) waitFor(t *testing.T, pred func(Transfer) bool, within time.Duration) Transfer {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, tr := range l.all() {
			if pred(tr) {
				return tr
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no matching transfer within %v; have %+v", within, l.all())
	return Transfer{}
}

var errSentinelTest = errors.New("test handler failure")

func hostPort(addr string) (string, string) {
	h, p, _ := strings.Cut(addr, ":")
	return h, p
}
