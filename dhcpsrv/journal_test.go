package dhcpsrv_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

func lease(i int, exp time.Time) dhcpsrv.Lease {
	return dhcpsrv.Lease{
		IP:      netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)}),
		MAC:     hwaddr.MAC{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)},
		Expires: exp, Hostname: fmt.Sprintf("h%d", i), UUID: "u", Arch: dhcpsrv.ArchEFIx64,
	}
}

func TestJournalPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	exp := time.Unix(2000000000, 0)
	j, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	for i := 1; i <= 5; i++ {
		_, err := j.CompareAndSwap(context.Background(), 0, lease(i, exp))
		require.NoError(t, err)
	}
	l3, err := j.Get(context.Background(), lease(3, exp).IP)
	require.NoError(t, err)
	require.NoError(t, j.CompareAndDelete(context.Background(), l3.IP, l3.Rev))
	l4, err := j.Get(context.Background(), lease(4, exp).IP)
	require.NoError(t, err)
	l4.State = dhcpsrv.StateReleased
	_, err = j.CompareAndSwap(context.Background(), l4.Rev, l4)
	require.NoError(t, err)
	require.NoError(t, j.Close())

	j2, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	defer j2.Close()
	all, err := j2.Leases()
	require.NoError(t, err)
	require.Len(t, all, 4)
	got, err := j2.ByMAC(context.Background(), lease(4, exp).MAC)
	require.NoError(t, err)
	assert.Equal(t, dhcpsrv.StateReleased, got.State)
	assert.Equal(t, "h4", got.Hostname)
	assert.Equal(t, dhcpsrv.ArchEFIx64, got.Arch)
	assert.True(t, exp.Equal(got.Expires))
	_, err = j2.Get(context.Background(), lease(3, exp).IP)
	assert.ErrorIs(t, err, dhcpsrv.ErrNotFound)
	// revisions keep growing after a reopen
	l1, err := j2.Get(context.Background(), lease(1, exp).IP)
	require.NoError(t, err)
	n, err := j2.CompareAndSwap(context.Background(), l1.Rev, l1)
	require.NoError(t, err)
	assert.Greater(t, n.Rev, got.Rev)
}

func TestJournalCompareAndSwapConflicts(t *testing.T) {
	j := dhcpsrv.NewMemoryStore()
	exp := time.Unix(2000000000, 0)
	l, err := j.CompareAndSwap(context.Background(), 0, lease(1, exp))
	require.NoError(t, err)
	_, err = j.CompareAndSwap(context.Background(), 0, lease(1, exp))
	assert.ErrorIs(t, err, dhcpsrv.ErrConflict, "insert over an existing record")
	_, err = j.CompareAndSwap(context.Background(), l.Rev+1, lease(1, exp))
	assert.ErrorIs(t, err, dhcpsrv.ErrConflict, "stale revision")
	assert.ErrorIs(t, j.CompareAndDelete(context.Background(), l.IP, l.Rev+1), dhcpsrv.ErrConflict)
	_, err = j.ByMAC(context.Background(), hwaddr.MAC{1})
	assert.ErrorIs(t, err, dhcpsrv.ErrNotFound)
	require.NoError(t, j.Close())
	_, err = j.CompareAndSwap(context.Background(), l.Rev, lease(1, exp))
	assert.ErrorIs(t, err, dhcpsrv.ErrClosed)
}

// Concurrent writers racing for the same addresses: each address ends with
// exactly one winner per round and the file replays to the same state.
func TestJournalConcurrentCAS(t *testing.T) {
	dir := t.TempDir()
	j, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	exp := time.Unix(2000000000, 0)
	var wg sync.WaitGroup
	wins := make([]int, 20)
	var mu sync.Mutex
	for w := range 8 {
		wg.Go(func() {
			for i := range 20 {
				l := lease(i, exp)
				l.MAC[0] = byte(w)
				if _, err := j.CompareAndSwap(context.Background(), 0, l); err == nil {
					mu.Lock()
					wins[i]++
					mu.Unlock()
				} else if !errors.Is(err, dhcpsrv.ErrConflict) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i, w := range wins {
		assert.Equal(t, 1, w, "address %d", i)
	}
	before, _ := j.Leases()
	require.NoError(t, j.Close())
	j2, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	defer j2.Close()
	after, _ := j2.Leases()
	assert.Equal(t, len(before), len(after))
	for i := range before {
		assert.Equal(t, before[i].MAC, after[i].MAC)
		assert.Equal(t, before[i].Rev, after[i].Rev)
	}
}

func TestJournalTornTailAndGarbage(t *testing.T) {
	dir := t.TempDir()
	exp := time.Unix(2000000000, 0)
	j, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	for i := 1; i <= 3; i++ {
		_, err := j.CompareAndSwap(context.Background(), 0, lease(i, exp))
		require.NoError(t, err)
	}
	require.NoError(t, j.Close())
	path := filepath.Join(dir, "leases.journal")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	// a torn last record (killed mid-write) and a flipped byte in another
	torn := append([]byte{}, data...)
	torn = append(torn, []byte(`1234abcd {"op":"put","rev":9,"ip":"10.99.0.9"`)...)
	require.NoError(t, os.WriteFile(path, torn, 0o640))
	j2, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	assert.Equal(t, 3, j2.Len())
	require.NoError(t, j2.Close())

	// an unparseable file is an error, not an empty lease table
	require.NoError(t, os.WriteFile(path, []byte("garbage\nmore garbage\n"), 0o640))
	_, err = dhcpsrv.OpenJournal(dir)
	assert.ErrorIs(t, err, dhcpsrv.ErrCorrupt)
}

func TestJournalLockedByOneOpener(t *testing.T) {
	dir := t.TempDir()
	j, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	defer j.Close()
	_, err = dhcpsrv.OpenJournal(dir)
	assert.Error(t, err)
}

// A server on a journal keeps its leases across a restart: same client,
// same address; the address is not given to another client.
func TestServerRestartKeepsLeases(t *testing.T) {
	dir := t.TempDir()
	j, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	s, clk := newServer(t, func(s *dhcpsrv.Server) { s.Leases = j })
	ack := dora(t, s, mac(1))
	require.NoError(t, j.Close())

	j2, err := dhcpsrv.OpenJournal(dir)
	require.NoError(t, err)
	defer j2.Close()
	s2, _ := newServer(t, func(s *dhcpsrv.Server) { s.Leases = j2; s.Clock = clk.Now })
	l, ok, _ := s2.Lease(context.Background(), hwaddr.MAC(mac(1)))
	require.True(t, ok)
	assert.Equal(t, ack.YourIPAddr.String(), l.IP.String())
	assert.NotEqual(t, ack.YourIPAddr.String(), dora(t, s2, mac(2)).YourIPAddr.String())
	assert.Equal(t, ack.YourIPAddr.String(), dora(t, s2, mac(1)).YourIPAddr.String())
}
