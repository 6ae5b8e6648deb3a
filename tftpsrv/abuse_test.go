package tftpsrv

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
