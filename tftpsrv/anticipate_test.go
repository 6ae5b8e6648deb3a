package tftpsrv

import (
	"encoding/binary"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
)

// lockstepFetch behaves like the tftp-hpa and curl clients: it acknowledges
// a block only when it is the next one expected, acknowledges a duplicate of
// the last block again, and ignores anything else. drop is the block whose
// first arrival is "lost". It returns the bytes received and whether the
// transfer completed.
func lockstepFetch(t *testing.T, addr, name string, drop uint16) ([]byte, bool) {
	c := newRawClient(t, addr)
	c.send(rrq(name))
	var got []byte
	var last uint16
	dropped := false
	for {
		p, from, err := c.recv(3 * time.Second)
		if err != nil {
			return got, false
		}
		switch binary.BigEndian.Uint16(p) {
		case 5:
			return got, false
		case 3:
		default:
			continue
		}
		blk := binary.BigEndian.Uint16(p[2:])
		if blk == drop && !dropped {
			dropped = true
			continue
		}
		switch blk {
		case last + 1:
			got = append(got, p[4:]...)
			last = blk
		case last:
		default:
			continue
		}
		c.conn.WriteToUDP([]byte{0, 4, byte(last >> 8), byte(last)}, from)
		if blk == last && len(p)-4 < 512 {
			return got, true
		}
	}
}

// TestAnticipateLossCharacterization documents measured pin/tftp behaviour
// (see the package documentation): in lockstep a lost block costs one
// retransmission; with Anticipate a block lost in the middle of a window
// makes the transfer fail, because pin/tftp resends the whole window and
// then waits for the acknowledgement of its first block, which a lockstep
// client (having already acknowledged it) never sends again. If this test
// starts failing, pin/tftp changed: update the documentation of Anticipate.
func TestAnticipateLossCharacterization(t *testing.T) {
	data := strings.Repeat("0123456789abcdef", 32*20) // 20 blocks of 512
	fsys := fstest.MapFS{"f": {Data: []byte(data)}}

	lock := &Server{FS: fsys, Timeout: 100 * time.Millisecond, Retries: 3}
	got, ok := lockstepFetch(t, startServer(t, lock), "f", 3)
	require.True(t, ok, "lockstep transfer with one lost block")
	require.Equal(t, data, string(got))

	// Loss of the first block of a window is recovered...
	ant := &Server{FS: fsys, Timeout: 100 * time.Millisecond, Retries: 3, Anticipate: 4}
	addr := startServer(t, ant)
	got, ok = lockstepFetch(t, addr, "f", 5)
	require.True(t, ok, "anticipate, loss of a window's first block")
	require.Equal(t, data, string(got))
	// ...loss in the middle of a window is not.
	got, ok = lockstepFetch(t, addr, "f", 3)
	require.False(t, ok, "anticipate, loss in the middle of a window: pin/tftp fixed this?")
	require.Less(t, len(got), len(data))
	require.Eventually(t, func() bool { return ant.Stats().Failed == 1 }, 10*time.Second, 10*time.Millisecond)
}
