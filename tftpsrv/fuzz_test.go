package tftpsrv

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"path"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// FuzzCleanPath checks that every accepted name is a valid fs path inside the
// tree and every refusal wraps ErrInvalidPath.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"grub.cfg", "/grub/grub.cfg", "../x", "/../x", "a\\b", "a\x00b", "//a", "a/./b",
		"grub/grub.cfg-01-52-54-00-12-34-56", strings.Repeat("a", 300), "\xff", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := CleanPath(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("CleanPath(%q): error %v does not wrap ErrInvalidPath", name, err)
			}
			return
		}
		if !fs.ValidPath(got) || got == "." || strings.ContainsAny(got, "\\\x00") || !utf8.ValidString(got) ||
			len(got) > MaxPathLen || path.Clean(got) != got || got == ".." || strings.HasPrefix(got, "../") {
			t.Fatalf("CleanPath(%q) = %q: not a safe path", name, got)
		}
		if got != name && "/"+got != name {
			t.Fatalf("CleanPath(%q) = %q: changed more than one leading slash", name, got)
		}
	})
}

// FuzzResolveInTree resolves fuzzed names and fuzzed link targets in a tree
// and checks a successful resolution never leaves it.
func FuzzResolveInTree(f *testing.F) {
	f.Add("l/x", "../a")
	f.Add("l", "/etc/passwd")
	f.Add("l/b", "d")
	f.Add("l", "l")
	f.Fuzz(func(t *testing.T, name, target string) {
		fsys := fstest.MapFS{
			"a":   {Data: []byte("a")},
			"d/b": {Data: []byte("b")},
			"l":   {Data: []byte(target), Mode: fs.ModeSymlink},
		}
		clean, err := CleanPath(name)
		if err != nil {
			return
		}
		got, err := resolveInTree(fsys, clean)
		if err != nil {
			return
		}
		if !fs.ValidPath(got) || got == "." || got == ".." || strings.HasPrefix(got, "../") {
			t.Fatalf("resolveInTree(%q) with l -> %q = %q: outside the tree", clean, target, got)
		}
	})
}

var fuzzSrv struct {
	once sync.Once
	addr *net.UDPAddr
	conn *net.UDPConn // sends the fuzzed datagrams
}

// FuzzRequestPacket sends fuzzed datagrams to the listening port of a live
// server: whatever arrives (requests with odd names, modes and options,
// stray packets) must never crash it. A valid request afterwards must still
// be answered.
func FuzzRequestPacket(f *testing.F) {
	f.Add(rrq("a.txt"))
	f.Add(rrq("/a.txt", "blksize", "65464", "tsize", "0"))
	f.Add(rrq("a.txt", "blksize", "x", "timeout", "0", "windowsize", "64"))
	f.Add(rrq("../../etc/passwd"))
	f.Add([]byte("\x00\x02up\x00octet\x00"))
	f.Add([]byte("\x00\x01a.txt\x00netascii\x00blksize\x00"))
	f.Add([]byte{0, 4, 0, 1})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		fuzzSrv.once.Do(func() {
			srv := &Server{
				FS:      fstest.MapFS{"a.txt": {Data: []byte(strings.Repeat("a", 2000))}},
				Timeout: 20 * time.Millisecond, Retries: 1, MaxTransfers: 100,
			}
			conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			enablePacketInfo(conn)
			go srv.Serve(context.Background(), conn) // lives as long as the test process
			fuzzSrv.addr = conn.LocalAddr().(*net.UDPAddr)
			fuzzSrv.conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
		})
		if len(pkt) > 1500 {
			pkt = pkt[:1500]
		}
		if _, err := fuzzSrv.conn.WriteToUDP(pkt, fuzzSrv.addr); err != nil {
			t.Fatal(err)
		}
		// The server must still answer a valid request (DATA, or an
		// ERROR such as "busy" while fuzzed transfers pile up); a DATA
		// answer is aborted with an ERROR so the transfer does not linger.
		probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer probe.Close()
		if _, err := probe.WriteToUDP(rrq("a.txt"), fuzzSrv.addr); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		probe.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := probe.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("server stopped answering after %q: %v", pkt, err)
		}
		if n >= 4 && buf[1] == 3 {
			probe.WriteToUDP([]byte("\x00\x05\x00\x00stop\x00"), from)
		}
	})
}

// FuzzParseRequest checks the request parser never panics and that what it
// accepts is well formed: a read or write request, a known mode, at most
// maxOptionCount options with distinct lower-case names; and that the
// options negotiated from it stay within their RFC ranges.
func FuzzParseRequest(f *testing.F) {
	f.Add(rrq("a.txt"))
	f.Add(rrq("/a.txt", "blksize", "65464", "tsize", "0", "windowsize", "64", "timeout", "3"))
	f.Add(rrq("a", "BLKSIZE", "7", "blksize", "9", "timeout", "256", "windowsize", "99999999999"))
	f.Add([]byte("\x00\x02up\x00netascii\x00"))
	f.Add([]byte("\x00\x01a\x00octet\x00blksize\x00"))
	f.Add([]byte("\x00\x01a\x00octet\x00\x00"))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		req, err := parseRequest(pkt)
		if err != nil {
			require.ErrorIs(t, err, errMalformed)
			return
		}
		require.Contains(t, []uint16{opRRQ, opWRQ}, req.op)
		require.Contains(t, []string{"octet", "netascii", "mail"}, req.mode)
		require.LessOrEqual(t, len(req.options), maxOptionCount)
		names := map[string]bool{}
		for _, o := range req.options {
			require.NotEmpty(t, o.name)
			require.Equal(t, strings.ToLower(o.name), o.name)
			require.False(t, names[o.name], "duplicate option %q", o.name)
			names[o.name] = true
		}
		for _, maxBlk := range []int{512, 1468, maxBlockSize} {
			p := (&Server{}).negotiate(req, 12345, maxBlk)
			require.GreaterOrEqual(t, p.blksize, minBlockSize)
			require.LessOrEqual(t, p.blksize, max(maxBlk, defBlockSize))
			require.GreaterOrEqual(t, p.window, 1)
			require.LessOrEqual(t, p.window*p.blksize, max(maxWindowBytes, p.blksize))
			require.GreaterOrEqual(t, p.timeout, time.Second)
			require.LessOrEqual(t, p.timeout, DefaultMaxTimeout)
			for _, o := range p.oack {
				_, sent := req.opt(o.name)
				require.True(t, sent, "OACK option %q the client did not send", o.name)
			}
		}
	})
}
