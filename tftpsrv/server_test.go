package tftpsrv

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCleanPath(t *testing.T) {
	ok := map[string]string{
		"grub.cfg":                        "grub.cfg",
		"/grub.cfg":                       "grub.cfg",
		"/grub/x86_64-efi/core.efi":       "grub/x86_64-efi/core.efi",
		"grub/grub.cfg-01-52-54-00-aa-bb": "grub/grub.cfg-01-52-54-00-aa-bb",
		"with space/ü.txt":                "with space/ü.txt",
		strings.Repeat("a", MaxPathLen):   strings.Repeat("a", MaxPathLen),
	}
	for in, want := range ok {
		got, err := CleanPath(in)
		require.NoError(t, err, "%q", in)
		require.Equal(t, want, got)
	}
	bad := []string{
		"", "/", ".", "/.", "..", "../x", "/../x", "a/../../x", "a/./b", "a//b", "//a", "a/",
		"a\\b", "..\\x", "a\x00b", "a\nb", "a\x7fb", "\xff\xfe", strings.Repeat("a", MaxPathLen+1),
	}
	for _, in := range bad {
		_, err := CleanPath(in)
		require.ErrorIs(t, err, ErrInvalidPath, "%q", in)
	}
}

func TestResolveInTreeMapFS(t *testing.T) {
	fsys := fstest.MapFS{
		"grub/x86_64-efi/core.efi": {Data: []byte("core")},
		"grub/link.efi":            {Data: []byte("x86_64-efi/core.efi"), Mode: fs.ModeSymlink},
		"efi":                      {Data: []byte("grub/x86_64-efi"), Mode: fs.ModeSymlink},
		"up":                       {Data: []byte("grub/../grub/x86_64-efi/core.efi"), Mode: fs.ModeSymlink},
		"out":                      {Data: []byte("../etc/passwd"), Mode: fs.ModeSymlink},
		"grub/out2":                {Data: []byte("../../x"), Mode: fs.ModeSymlink},
		"abs":                      {Data: []byte("/etc/passwd"), Mode: fs.ModeSymlink},
		"self":                     {Data: []byte("self"), Mode: fs.ModeSymlink},
		"dot":                      {Data: []byte("."), Mode: fs.ModeSymlink},
	}
	for in, want := range map[string]string{
		"grub/x86_64-efi/core.efi": "grub/x86_64-efi/core.efi",
		"grub/link.efi":            "grub/x86_64-efi/core.efi",
		"efi/core.efi":             "grub/x86_64-efi/core.efi",
		"up":                       "grub/x86_64-efi/core.efi",
	} {
		got, err := resolveInTree(fsys, in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"out", "grub/out2", "abs", "self"} {
		_, err := resolveInTree(fsys, in)
		require.ErrorIs(t, err, ErrEscape, in)
	}
	_, err := resolveInTree(fsys, "dot")
	require.ErrorIs(t, err, ErrInvalidPath)
	_, err = resolveInTree(fsys, "missing")
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// TestRawRequests sends requests no real client sends and checks each gets
// a TFTP ERROR, is counted, and reported with its error.
func TestRawRequests(t *testing.T) {
	var log transferLog
	srv := &Server{
		FS:         fstest.MapFS{"a.txt": {Data: []byte("hello")}, "dir/b": {Data: []byte("b")}},
		Handler:    dynamicHandler(nil),
		OnTransfer: log.add,
	}
	c := newRawClient(t, startServer(t, srv))
	c.expectError(rrq(strings.Repeat("a/", 200)+"x"), "file name refused")
	c.expectError(rrq("a\x01b"), "file name refused")
	c.expectError(rrq("a\\b"), "file name refused")
	c.expectError(rrq("\xc3\x28"), "file name refused")
	c.expectError(rrq(""), "file name refused")
	c.expectError(rrq("dir"), "not a regular file")
	c.expectError(rrq("nope"), "file not found")
	c.expectError(rrq("grub/grub.cfg-01-52-54-00-00-00-01"), "file not found") // handler says ErrNotExist, FS has none
	c.expectError(rrq("handler-error"), "server error")
	c.expectError(rrq("handler-panic"), "server error")
	c.expectError([]byte("\x00\x02upload\x00octet\x00"), "read-only server")

	// Malformed packets on the listening port are dropped and counted.
	for _, p := range [][]byte{{0}, {0, 9, 1, 2}, {0, 4, 0, 1}, {0, 3, 0, 1, 'x'}, {0, 5, 0}} {
		c.send(p)
	}
	// The server still answers afterwards.
	c.send(rrq("/a.txt"))
	p, from, err := c.recv(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, []byte("\x00\x03\x00\x01hello"), p)
	_, err = c.conn.WriteToUDP([]byte{0, 4, 0, 1}, from)
	require.NoError(t, err)

	tr := log.waitFor(t, func(tr Transfer) bool { return tr.Filename == "a.txt" && tr.Err == nil }, 5*time.Second)
	require.Equal(t, int64(5), tr.Bytes)
	require.False(t, tr.Dynamic)
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().Malformed < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := srv.Stats()
	assert.Equal(t, uint64(5), st.Malformed)
	assert.Equal(t, uint64(7), st.Refused) // 5 names, dir, write
	assert.Equal(t, uint64(2), st.NotFound)
	assert.Equal(t, uint64(2), st.Failed) // handler error, handler panic
	assert.Equal(t, uint64(1), st.Completed)
	assert.Equal(t, uint64(11), st.Requests) // read requests only

	var sawHandlerErr bool
	for _, tr := range log.all() {
		if tr.Filename == "handler-error" {
			sawHandlerErr = true
			require.ErrorIs(t, tr.Err, errSentinelTest)
			require.True(t, tr.Dynamic)
		}
		if tr.Err != nil && strings.HasPrefix(tr.Filename, "a/a/") {
			require.ErrorIs(t, tr.Err, ErrInvalidPath)
		}
	}
	require.True(t, sawHandlerErr)
}

// TestDynamicTsize checks the handler's content length is announced as tsize
// and the client address reaches the handler.
func TestDynamicTsize(t *testing.T) {
	seenCh := make(chan *Request, 1)
	srv := &Server{Handler: HandlerFunc(func(ctx context.Context, req *Request) ([]byte, error) {
		seenCh <- req
		return []byte(strings.Repeat("x", 1500)), nil
	})}
	c := newRawClient(t, startServer(t, srv))
	c.send(rrq("/grub.cfg", "tsize", "0", "blksize", "1024"))
	p, from, err := c.recv(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, uint16(6), binary.BigEndian.Uint16(p), "OACK expected, got %q", p)
	opts := strings.Split(string(p[2:]), "\x00")
	m := map[string]string{}
	for i := 0; i+1 < len(opts); i += 2 {
		m[opts[i]] = opts[i+1]
	}
	require.Equal(t, "1500", m["tsize"])
	require.Equal(t, "1024", m["blksize"])
	seen := <-seenCh
	require.Equal(t, "grub.cfg", seen.Filename)
	require.Equal(t, c.conn.LocalAddr().(*net.UDPAddr).AddrPort(), seen.Client)
	// Fetch the two blocks.
	var got []byte
	for blk := uint16(0); ; blk++ {
		ack := []byte{0, 4, 0, 0}
		binary.BigEndian.PutUint16(ack[2:], blk)
		_, err = c.conn.WriteToUDP(ack, from)
		require.NoError(t, err)
		p, _, err = c.recv(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, uint16(3), binary.BigEndian.Uint16(p))
		got = append(got, p[4:]...)
		if len(p)-4 < 1024 {
			binary.BigEndian.PutUint16(ack[2:], blk+1)
			c.conn.WriteToUDP(ack, from)
			break
		}
	}
	require.Len(t, got, 1500)
}

// TestVanishedClient starts a transfer, takes one block and disappears. The
// server must give up after its retransmissions, report the failure, and
// leave no goroutine behind, both while serving and after Serve returns.
func TestVanishedClient(t *testing.T) {
	root, _ := testTree(t)
	base := runtime.NumGoroutine()
	var log transferLog
	srv := &Server{FS: os.DirFS(root), Timeout: 50 * time.Millisecond, Retries: 2, OnTransfer: log.add}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer conn.Close() // Serve leaves it open
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	serving := base + 1 // the Serve call

	for i := 0; i < 5; i++ {
		c := newRawClient(t, conn.LocalAddr().String())
		c.send(rrq("big.bin", "blksize", "1468"))
		p, _, err := c.recv(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, uint16(6), binary.BigEndian.Uint16(p)) // OACK; never acknowledged
		c.conn.Close()
	}
	// One more that acknowledges a few blocks, then vanishes.
	c := newRawClient(t, conn.LocalAddr().String())
	c.send(rrq("big.bin"))
	for blk := uint16(1); blk <= 3; blk++ {
		p, from, err := c.recv(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, blk, binary.BigEndian.Uint16(p[2:]))
		c.conn.WriteToUDP([]byte{0, 4, byte(blk >> 8), byte(blk)}, from)
	}
	c.conn.Close()

	for i := 0; i < 6; i++ {
		log.waitFor(t, func(tr Transfer) bool { return tr.Err != nil }, 10*time.Second)
	}
	waitGoroutines(t, serving, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().Failed < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := srv.Stats()
	require.Equal(t, uint64(6), st.Failed)
	require.Zero(t, st.Active)
	for _, tr := range log.all() {
		require.Error(t, tr.Err)
		require.Equal(t, "big.bin", tr.Filename)
	}

	// A client vanishing while the server shuts down.
	c = newRawClient(t, conn.LocalAddr().String())
	c.send(rrq("big.bin"))
	_, _, err = c.recv(5 * time.Second)
	require.NoError(t, err)
	c.conn.Close()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
	waitGoroutines(t, base, 10*time.Second)
}

// TestServeStopsIdle checks Serve and ListenAndServe return promptly when
// the context ends, in both modes, and refuse a second concurrent Serve.
func TestServeStopsIdle(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, single := range []bool{false, true} {
		srv := &Server{SinglePort: single, Addr: "127.0.0.1:0"}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.ListenAndServe(ctx) }()
		time.Sleep(50 * time.Millisecond)
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		require.ErrorIs(t, srv.Serve(ctx, conn), ErrAlreadyServing)
		conn.Close()
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("single=%v: ListenAndServe did not return", single)
		}
	}
	waitGoroutines(t, base, 5*time.Second)

	err := (&Server{Addr: "256.0.0.1:69"}).ListenAndServe(context.Background())
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrAlreadyServing))
}

// TestMaxTransfers checks a request beyond MaxTransfers is refused at once
// with "server busy" and counted, and accepted again once a slot frees.
func TestMaxTransfers(t *testing.T) {
	srv := &Server{
		FS:           fstest.MapFS{"f": {Data: []byte(strings.Repeat("x", 4000))}},
		Timeout:      300 * time.Millisecond,
		MaxTransfers: 2,
	}
	addr := startServer(t, srv)
	var holders []*rawClient
	var tids []*net.UDPAddr
	for i := 0; i < 2; i++ {
		c := newRawClient(t, addr)
		c.send(rrq("f"))
		p, from, err := c.recv(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, uint16(3), binary.BigEndian.Uint16(p)) // DATA 1, not acknowledged
		holders = append(holders, c)
		tids = append(tids, from)
	}
	newRawClient(t, addr).expectError(rrq("f"), "server busy")
	require.Equal(t, uint64(1), srv.Stats().Busy)
	// Abort one held transfer with an ERROR; its slot frees.
	_, err := holders[0].conn.WriteToUDP([]byte("\x00\x05\x00\x00bye\x00"), tids[0])
	require.NoError(t, err)
	require.Eventually(t, func() bool { return srv.Stats().Active < 2 }, 10*time.Second, 10*time.Millisecond)
	c := newRawClient(t, addr)
	c.send(rrq("f"))
	p, from, err := c.recv(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, uint16(3), binary.BigEndian.Uint16(p))
	require.Equal(t, uint64(1), srv.Stats().Busy)
	// End the remaining transfers so shutdown need not wait for timeouts.
	c.conn.WriteToUDP([]byte("\x00\x05\x00\x00bye\x00"), from)
	holders[1].conn.WriteToUDP([]byte("\x00\x05\x00\x00bye\x00"), tids[1])
}

// TestSinglePortStrayPacket checks that in single-port mode a stray packet
// that is not a request (a late ACK, junk) is counted and leaves nothing
// behind: a later request from the same address and port is served, and
// transfers from two clients at once are kept apart.
func TestSinglePortStrayPacket(t *testing.T) {
	data := strings.Repeat("s", 512*40+1)
	srv := &Server{FS: fstest.MapFS{"f": {Data: []byte(data)}}, SinglePort: true}
	addr := startServer(t, srv)

	stray := newRawClient(t, addr)
	stray.send([]byte{0, 4, 0, 7}) // an ACK nobody asked for
	require.Eventually(t, func() bool { return srv.Stats().Malformed >= 1 }, 5*time.Second, 10*time.Millisecond)
	stray.send(rrq("f"))
	p, from, err := stray.recv(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, uint16(3), binary.BigEndian.Uint16(p), "a request after a stray packet is served")
	require.Equal(t, addr, from.String(), "answered from the listening port")
	stray.conn.WriteToUDP([]byte("\x00\x05\x00\x00bye\x00"), from)

	results := make(chan fetchResult, 2)
	for range 2 {
		go func() { results <- lockstepFetch(t, addr, "f", nil, "blksize", "512") }()
	}
	for range 2 {
		res := <-results
		require.True(t, res.ok, res.error)
		require.Equal(t, data, string(res.data))
	}
}
