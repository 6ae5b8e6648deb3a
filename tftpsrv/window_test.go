package tftpsrv

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fetchResult is what a scripted client saw.
type fetchResult struct {
	data  []byte
	ok    bool              // the last block arrived and was acknowledged
	oack  map[string]string // options the server acknowledged (nil: no OACK)
	dups  int               // duplicate or out-of-order blocks received
	acks  int               // ACK packets sent
	error string            // an ERROR packet's message
}

// scripted is the receiving side shared by the scripted clients: it sends
// the request, answers an OACK with ACK 0, loses the blocks drop says are
// lost, and hands over the DATA packets that get through.
type scripted struct {
	t       *testing.T
	c       *rawClient
	res     fetchResult
	blksize int
	drop    func(blk uint16, first bool) bool
	seen    map[uint16]bool
}

func newScripted(t *testing.T, addr string, req []byte, drop func(uint16, bool) bool) *scripted {
	s := &scripted{t: t, c: newRawClient(t, addr), blksize: defBlockSize, drop: drop, seen: map[uint16]bool{}}
	s.c.send(req)
	return s
}

// next returns the next DATA packet that is not lost, or ok false when the
// server sent an ERROR or went silent for 3 s.
func (s *scripted) next() (blk uint16, payload []byte, from *net.UDPAddr, ok bool) {
	for {
		p, from, err := s.c.recv(3 * time.Second)
		if err != nil || len(p) < 4 {
			return 0, nil, nil, false
		}
		switch binary.BigEndian.Uint16(p) {
		case opERROR:
			s.res.error = string(bytes.TrimRight(p[4:], "\x00"))
			return 0, nil, nil, false
		case opOACK:
			s.res.oack = parseOACK(p)
			if v, ok := s.res.oack["blksize"]; ok {
				s.blksize, _ = strconv.Atoi(v)
			}
			s.ack(0, from)
			continue
		case opDATA:
		default:
			continue
		}
		blk := binary.BigEndian.Uint16(p[2:])
		first := !s.seen[blk]
		s.seen[blk] = true
		if s.drop != nil && s.drop(blk, first) {
			continue
		}
		return blk, p[4:], from, true
	}
}

func (s *scripted) ack(blk uint16, to *net.UDPAddr) {
	s.c.conn.WriteToUDP([]byte{0, 4, byte(blk >> 8), byte(blk)}, to)
	s.res.acks++
}

// lockstepFetch behaves like the tftp-hpa and curl clients: it acknowledges
// a block only when it is the next one expected, acknowledges a duplicate of
// the last block again, and ignores anything else (the block number is 16
// bits and wraps to 0). drop reports whether the first arrival of a block
// is "lost". opts are RRQ options (name, value pairs).
func lockstepFetch(t *testing.T, addr, name string, drop func(blk uint16, first bool) bool, opts ...string) fetchResult {
	t.Helper()
	return lockstepFetchLossy(t, addr, name, drop, nil, opts...)
}

// lockstepFetchLossy is lockstepFetch that also loses the ACKs for which
// dropAck (given the block and whether it is the first ACK for it) is true.
func lockstepFetchLossy(t *testing.T, addr, name string, drop, dropAck func(blk uint16, first bool) bool, opts ...string) fetchResult {
	t.Helper()
	s := newScripted(t, addr, rrq(name, opts...), drop)
	acked := map[uint16]bool{}
	var last uint16
	for {
		blk, payload, from, ok := s.next()
		if !ok {
			return s.res
		}
		switch blk {
		case last + 1:
			s.res.data = append(s.res.data, payload...)
			last = blk
		case last:
			s.res.dups++
		default:
			s.res.dups++
			continue
		}
		if dropAck != nil && dropAck(last, !acked[last]) {
			s.res.acks++ // sent, and lost
		} else {
			s.ack(last, from)
		}
		acked[last] = true
		if blk == last && len(payload) < s.blksize {
			s.res.ok = true
			return s.res
		}
	}
}

// windowFetch is an RFC 7440 client: it negotiates windowsize, acknowledges
// the last block of each window (and the final block), and when a block is
// missing it acknowledges the last block received in order once and
// discards what follows until the server resends.
func windowFetch(t *testing.T, addr, name string, window int, drop func(blk uint16, first bool) bool, opts ...string) fetchResult {
	t.Helper()
	s := newScripted(t, addr, rrq(name, append([]string{"windowsize", strconv.Itoa(window)}, opts...)...), drop)
	var last uint16
	inWindow := 0
	gapAcked := false
	for {
		blk, payload, from, ok := s.next()
		if !ok {
			return s.res
		}
		if v, ok := s.res.oack["windowsize"]; ok {
			window, _ = strconv.Atoi(v)
		} else {
			window = 1
		}
		if blk != last+1 {
			s.res.dups++
			if !gapAcked {
				s.ack(last, from)
				gapAcked = true
				inWindow = 0
			}
			continue
		}
		gapAcked = false
		s.res.data = append(s.res.data, payload...)
		last = blk
		inWindow++
		final := len(payload) < s.blksize
		if inWindow == window || final {
			s.ack(last, from)
			inWindow = 0
		}
		if final {
			s.res.ok = true
			return s.res
		}
	}
}

func parseOACK(p []byte) map[string]string {
	m := map[string]string{}
	f := bytes.Split(bytes.TrimSuffix(p[2:], []byte{0}), []byte{0})
	for i := 0; i+1 < len(f); i += 2 {
		m[string(f[i])] = string(f[i+1])
	}
	return m
}

// dropOnce loses the first arrival of the given blocks.
func dropOnce(blocks ...uint16) func(uint16, bool) bool {
	return func(blk uint16, first bool) bool {
		if !first {
			return false
		}
		for _, b := range blocks {
			if b == blk {
				return true
			}
		}
		return false
	}
}

// TestSendAheadRecoversLoss loses blocks at every position of a window
// (first, middle, last, the final empty block) for a lockstep client and
// checks the transfer completes with the right bytes at every send-ahead
// width, and that a duplicate ACK never triggers a retransmission storm.
func TestSendAheadRecoversLoss(t *testing.T) {
	data := strings.Repeat("0123456789abcdef", 32*20) // 20 blocks of 512, then an empty block 21
	fsys := fstest.MapFS{"f": {Data: []byte(data)}}
	for _, ahead := range []int{1, 4, 8, 64} {
		srv := &Server{FS: fsys, Timeout: 50 * time.Millisecond, Retries: 3, SendAhead: ahead}
		addr := startServer(t, srv)
		for _, lost := range [][]uint16{nil, {1}, {3}, {4}, {5}, {8, 9}, {20}, {21}, {2, 3, 4, 5, 6}} {
			res := lockstepFetch(t, addr, "f", dropOnce(lost...))
			require.True(t, res.ok, "send-ahead %d, lost %v: %+v", ahead, lost, res.error)
			require.Equal(t, data, string(res.data), "send-ahead %d, lost %v", ahead, lost)
			// Every block is acknowledged once, plus at most a few
			// re-acknowledged duplicates per loss.
			require.LessOrEqual(t, res.acks, 21+2*len(lost)*ahead, "send-ahead %d, lost %v", ahead, lost)
		}
		require.Eventually(t, func() bool { return srv.Stats().Completed == 9 }, 5*time.Second, 10*time.Millisecond)
		require.Zero(t, srv.Stats().Failed)
	}
}

// TestSendAheadRecoversAckLoss loses acknowledgements instead of blocks: a
// whole window's worth, so that the client holds blocks the server thinks
// are lost. A lockstep client answers only a resent copy of the last block
// it got, so the server must resend everything outstanding, not just the
// window's first block (found by a 200-client single-port boot storm, where
// the listening socket dropped ACKs and transfers stalled for a minute).
func TestSendAheadRecoversAckLoss(t *testing.T) {
	data := strings.Repeat("0123456789abcdef", 32*40) // 40 blocks of 512, then an empty block 41
	fsys := fstest.MapFS{"f": {Data: []byte(data)}}
	for _, ahead := range []int{2, 8, 64} {
		var log transferLog
		srv := &Server{FS: fsys, Timeout: 50 * time.Millisecond, Retries: 3, SendAhead: ahead, OnTransfer: log.add}
		addr := startServer(t, srv)
		for i, lost := range [][]uint16{{1}, {1, 2, 3, 4, 5, 6, 7, 8}, {9, 10, 11, 12}, {33, 34, 35, 36, 37, 38, 39, 40}} {
			res := lockstepFetchLossy(t, addr, "f", nil, dropOnce(lost...), "blksize", "512")
			require.True(t, res.ok, "send-ahead %d, ACKs lost %v: %s", ahead, lost, res.error)
			require.Equal(t, data, string(res.data))
			// The server saw the transfer through, resending what was
			// outstanding once per lost acknowledgement at most.
			log.waitFor(t, func(Transfer) bool { return len(log.all()) > i }, 5*time.Second)
			tr := log.all()[i]
			require.NoError(t, tr.Err, "send-ahead %d, ACKs lost %v", ahead, lost)
			require.LessOrEqual(t, tr.Retransmits, ahead*len(lost), "send-ahead %d, ACKs lost %v", ahead, lost)
		}
	}
}

// TestSendAheadRandomLoss runs transfers through 10% random loss in both
// directions' worth (every block has a one-in-ten chance to be lost on each
// arrival) and requires every one to complete intact.
func TestSendAheadRandomLoss(t *testing.T) {
	data := make([]byte, 200*512+100)
	for i := range data {
		data[i] = byte(i * 7)
	}
	fsys := fstest.MapFS{"f": {Data: data}}
	rng := rand.New(rand.NewPCG(1, 2))
	lossy := func(uint16, bool) bool { return rng.IntN(10) == 0 }
	srv := &Server{FS: fsys, Timeout: 20 * time.Millisecond, Retries: 8}
	addr := startServer(t, srv)
	for i := 0; i < 3; i++ {
		res := lockstepFetch(t, addr, "f", lossy)
		require.True(t, res.ok, "lockstep client, run %d: %s", i, res.error)
		require.Equal(t, data, res.data)
		res = windowFetch(t, addr, "f", 16, lossy)
		require.True(t, res.ok, "windowsize client, run %d: %s", i, res.error)
		require.Equal(t, data, res.data)
	}
}

// TestWindowsize negotiates RFC 7440 windowsize, checks the OACK and the
// bounds on the window, and recovers from losses inside a window.
func TestWindowsize(t *testing.T) {
	data := strings.Repeat("x", 1468*30+7)
	srv := &Server{FS: fstest.MapFS{"f": {Data: []byte(data)}}, Timeout: 50 * time.Millisecond}
	addr := startServer(t, srv)

	res := windowFetch(t, addr, "f", 8, nil, "blksize", "1468", "tsize", "0")
	require.True(t, res.ok, res.error)
	require.Equal(t, data, string(res.data))
	assert.Equal(t, map[string]string{"windowsize": "8", "blksize": "1468", "tsize": strconv.Itoa(len(data))}, res.oack)
	assert.Equal(t, 1+4, res.acks, "ACK 0, then one per window of 8 (31 blocks)")

	for _, lost := range [][]uint16{{1}, {4}, {8}, {9}, {31}, {3, 5, 7}} {
		res = windowFetch(t, addr, "f", 8, dropOnce(lost...), "blksize", "1468")
		require.True(t, res.ok, "lost %v: %s", lost, res.error)
		require.Equal(t, data, string(res.data), "lost %v", lost)
	}

	// A window larger than MaxWindow is lowered, never refused.
	res = windowFetch(t, addr, "f", 5000, nil)
	require.True(t, res.ok, res.error)
	assert.Equal(t, "64", res.oack["windowsize"])
	// windowsize × blksize stays within 1 MiB.
	big := &Server{FS: fstest.MapFS{"f": {Data: []byte(data)}}}
	res = windowFetch(t, startServer(t, big), "f", 64, nil, "blksize", "65464")
	require.True(t, res.ok, res.error)
	assert.Equal(t, "65464", res.oack["blksize"], "loopback MTU allows the largest block")
	assert.Equal(t, strconv.Itoa(maxWindowBytes/65464), res.oack["windowsize"])

	// MaxWindow < 0 refuses the option: no windowsize in the OACK.
	off := &Server{FS: fstest.MapFS{"f": {Data: []byte(data)}}, MaxWindow: -1}
	res = windowFetch(t, startServer(t, off), "f", 8, nil, "blksize", "1024")
	require.True(t, res.ok, res.error)
	assert.Equal(t, map[string]string{"blksize": "1024"}, res.oack)
}

// TestOptions covers the RFC 2347/2349 corner cases: timeout (up to
// MaxTimeout) is echoed or refused (never changed), values out of range are
// ignored, a zero tsize is left out, option names are case-insensitive, and
// a client
// that ends the transfer after the OACK (firmware reading tsize) is counted
// as aborted, not failed.
func TestOptions(t *testing.T) {
	fsys := fstest.MapFS{"f": {Data: []byte("hello")}, "empty": {}}
	srv := &Server{FS: fsys}
	addr := startServer(t, srv)

	res := lockstepFetch(t, addr, "f", nil, "TIMEOUT", "3", "BlkSize", "4", "tsize", "0", "x-vendor", "1")
	require.True(t, res.ok, res.error)
	assert.Equal(t, map[string]string{"timeout": "3", "tsize": "5"}, res.oack, "blksize 4 < 8 is ignored")
	res = lockstepFetch(t, addr, "empty", nil, "tsize", "0", "timeout", "256", "blksize", "100000")
	require.True(t, res.ok, res.error)
	assert.Equal(t, map[string]string{"blksize": "65464"}, res.oack, "timeout 256 refused, blksize lowered, zero tsize left out (curl refuses it)")
	res = lockstepFetch(t, addr, "f", nil, "blksize", "x", "windowsize", "0")
	require.True(t, res.ok, res.error)
	assert.Nil(t, res.oack, "no acceptable option, no OACK")
	assert.Equal(t, "hello", string(res.data))

	// The tsize probe: OACK, then the client sends an ERROR.
	c := newRawClient(t, addr)
	c.send(rrq("f", "tsize", "0"))
	p, from, err := c.recv(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "tsize", string(bytes.Split(p[2:], []byte{0})[0]))
	c.conn.WriteToUDP([]byte("\x00\x05\x00\x08size only\x00"), from)
	require.Eventually(t, func() bool { return srv.Stats().Aborted == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Zero(t, srv.Stats().Failed)
}

// TestBlockNumberWraps sends more than 65536 blocks: the 16-bit block
// number wraps to 0, as tftp-hpa, curl, GRUB and EDK2 expect.
func TestBlockNumberWraps(t *testing.T) {
	data := make([]byte, 70000*16+3)
	for i := range data {
		data[i] = byte(i)
	}
	srv := &Server{FS: fstest.MapFS{"f": {Data: data}}, Timeout: 100 * time.Millisecond}
	addr := startServer(t, srv)
	res := windowFetch(t, addr, "f", 32, nil, "blksize", "16")
	require.True(t, res.ok, res.error)
	require.Equal(t, len(data), len(res.data))
	require.Equal(t, data, res.data)
	res = lockstepFetch(t, addr, "f", dropOnce(65535, 0, 1), "blksize", "16")
	require.True(t, res.ok, res.error)
	require.Equal(t, data, res.data)
}

// TestNetascii converts line ends for a netascii request (tftp-hpa's
// default mode) and announces no tsize for it.
func TestNetascii(t *testing.T) {
	srv := &Server{FS: fstest.MapFS{"f": {Data: []byte("a\nb\rc\r\n" + strings.Repeat("z\n", 600))}}}
	c := newRawClient(t, startServer(t, srv))
	c.send([]byte("\x00\x01f\x00NetASCII\x00tsize\x000\x00"))
	var got []byte
	for {
		p, from, err := c.recv(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, uint16(opDATA), binary.BigEndian.Uint16(p), "no OACK: tsize is not offered for netascii")
		got = append(got, p[4:]...)
		c.conn.WriteToUDP([]byte{0, 4, p[2], p[3]}, from)
		if len(p)-4 < 512 {
			break
		}
	}
	assert.Equal(t, "a\r\nb\r\x00c\r\x00\r\n"+strings.Repeat("z\r\n", 600), string(got))
}
