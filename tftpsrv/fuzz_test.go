package tftpsrv

import (
	"bytes"
	"context"
	"encoding/binary"
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

// fuzzXfer holds the servers FuzzTransferPackets starts once per process:
// [0] answers from per-transfer sockets, [1] from the listening port.
var fuzzXfer struct {
	once sync.Once
	srv  [2]*Server
	log  [2]*transferLog
	addr [2]*net.UDPAddr
}

// Fuzzed script bytes: each datagram starts with a header byte.
const (
	fuzzFromOther = 0x80 // sent from another socket: a wrong transfer ID
	fuzzAckLast   = 0x40 // no payload: acknowledge the last block received
	fuzzToListen  = 0x20 // sent to the listening port, not the transfer's
	fuzzLenMask   = 0x1f // payload length in the bytes that follow
)

// fuzzFile is the served file: 251 blocks of 8 bytes, 4 of 512.
var fuzzFile = []byte(strings.Repeat("0123456789", 200))

// FuzzTransferPackets starts a transfer on 127.0.0.1 and feeds fuzzed
// datagrams to it while it runs: ACKs of any block, ERRORs, garbage,
// packets from a wrong transfer ID and to the listening port, in both
// socket modes. The server must not panic, every transfer must end
// (complete or fail) within its bounds, and one that completes must have
// sent the whole file.
//
// mode bit 0 selects single-port mode, bits 1-2 the request's options (none;
// blksize 8 and windowsize 4; blksize 8 and tsize; blksize 8). The script is
// a sequence of datagrams, each a header byte (fuzzFromOther, fuzzAckLast,
// fuzzToListen, and a length) and that many payload bytes.
func FuzzTransferPackets(f *testing.F) {
	ackAll := bytes.Repeat([]byte{fuzzAckLast}, 64)
	f.Add(byte(0), ackAll)
	f.Add(byte(2), ackAll)
	f.Add(byte(3), ackAll)
	f.Add(byte(6), ackAll)
	f.Add(byte(1), append([]byte{fuzzAckLast, 4, 0, 4, 0, 9}, ackAll[:8]...))
	f.Add(byte(2), []byte{fuzzAckLast, 4, 0, 4, 0xff, 0xff, 4, 0, 4, 0, 0, fuzzAckLast})
	f.Add(byte(4), []byte{fuzzAckLast, 7, 0, 5, 0, 0, 'b', 'y', 'e', 0})
	f.Add(byte(2), []byte{fuzzFromOther | 4, 0, 4, 0, 1, fuzzToListen | 4, 0, 4, 0, 1, fuzzAckLast})
	f.Add(byte(3), []byte{fuzzToListen | 8, 0, 1, 'f', 0, 'o', 'c', 't', 0, fuzzAckLast, 2, 0, 4})
	f.Add(byte(0), []byte{3, 0, 3, 0, fuzzFromOther | fuzzToListen | 8, 0, 1, 'f', 0, 'o', 'c', 't', 0})
	f.Fuzz(func(t *testing.T, mode byte, script []byte) {
		fuzzXfer.once.Do(func() {
			for i := range fuzzXfer.srv {
				log := new(transferLog)
				srv := &Server{
					FS:      fstest.MapFS{"f": {Data: fuzzFile}},
					Timeout: 5 * time.Millisecond, Retries: 1, SinglePort: i == 1,
					OnTransfer: log.add,
				}
				conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				enablePacketInfo(conn)
				go srv.Serve(context.Background(), conn) // lives as long as the test process
				fuzzXfer.srv[i], fuzzXfer.log[i], fuzzXfer.addr[i] = srv, log, conn.LocalAddr().(*net.UDPAddr)
			}
		})
		single := int(mode & 1)
		srv, log, listen := fuzzXfer.srv[single], fuzzXfer.log[single], fuzzXfer.addr[single]
		// Every transfer of the previous input has ended (checked below),
		// so whatever the log holds is old.
		log.mu.Lock()
		log.ts = nil
		log.mu.Unlock()

		var opts []string
		switch (mode >> 1) & 3 {
		case 1:
			opts = []string{"blksize", "8", "windowsize", "4"}
		case 2:
			opts = []string{"blksize", "8", "tsize", "0"}
		case 3:
			opts = []string{"blksize", "8"}
		}
		client, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		me := client.LocalAddr().(*net.UDPAddr).AddrPort()

		if _, err := client.WriteToUDP(rrq("f", opts...), listen); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, tid, err := client.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no answer to the request: %v", err)
		}
		var lastBlock []byte // the block number of the last DATA received
		note := func(p []byte) {
			if len(p) < 4 {
				t.Fatalf("server sent a %d-byte packet", len(p))
			}
			switch op := binary.BigEndian.Uint16(p); op {
			case opDATA:
				lastBlock = append(lastBlock[:0], p[2:4]...)
			case opOACK:
				lastBlock = []byte{0, 0}
			case opERROR:
			default:
				t.Fatalf("server sent opcode %d", op)
			}
		}
		note(buf[:n])
		drain := func() {
			for {
				client.SetReadDeadline(time.Now().Add(time.Millisecond))
				n, _, err := client.ReadFromUDP(buf)
				if err != nil {
					return
				}
				note(buf[:n])
			}
		}

		for sent := 0; len(script) > 0 && sent < 64; sent++ {
			hdr := script[0]
			script = script[1:]
			var pkt []byte
			if hdr&fuzzAckLast != 0 {
				drain()
				pkt = append([]byte{0, opACK}, lastBlock...)
			} else {
				k := min(int(hdr&fuzzLenMask), len(script))
				pkt, script = script[:k], script[k:]
			}
			from, to := client, tid
			if hdr&fuzzFromOther != 0 {
				from = other
			}
			if hdr&fuzzToListen != 0 {
				to = listen
			}
			from.WriteToUDP(pkt, to) // an ICMP error from a closed port is fine
		}

		// The transfer ends by itself: completed, ended by the client,
		// or given up after its retries (a few times 5 ms).
		deadline := time.Now().Add(20 * time.Second)
		var tr *Transfer
		for tr == nil {
			drain()
			for _, x := range log.all() {
				if x.Client == me && x.Filename == "f" {
					tr = &x
					break
				}
			}
			if tr == nil && time.Now().After(deadline) {
				t.Fatalf("the transfer did not end within 20s; stats %+v", srv.Stats())
			}
		}
		if tr.Err == nil && tr.Bytes != int64(len(fuzzFile)) {
			t.Fatalf("a transfer reported complete after %d of %d bytes", tr.Bytes, len(fuzzFile))
		}
		// Transfers the script started (from the other socket, or to the
		// listening port) end too.
		for srv.Stats().Active != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d transfers still running 20s later", srv.Stats().Active)
			}
			time.Sleep(time.Millisecond)
		}
	})
}
