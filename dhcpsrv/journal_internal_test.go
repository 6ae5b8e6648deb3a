package dhcpsrv

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestJournalCompactsWhenLarge(t *testing.T) {
	old := compactMin
	compactMin = 100
	defer func() { compactMin = old }()
	dir := t.TempDir()
	j, err := OpenJournal(dir)
	require.NoError(t, err)
	l, err := j.CompareAndSwap(context.Background(), 0, Lease{IP: netip.MustParseAddr("10.99.0.5"), MAC: [6]byte{2, 0, 0, 0, 0, 5}, Expires: time.Unix(2e9, 0)})
	require.NoError(t, err)
	var maxSize int64
	for range 450 { // renewals of one lease
		l, err = j.CompareAndSwap(context.Background(), l.Rev, l)
		require.NoError(t, err)
		st, err := os.Stat(filepath.Join(dir, journalName))
		require.NoError(t, err)
		maxSize = max(maxSize, st.Size())
	}
	assert.Less(t, maxSize, int64(110*200), "journal was compacted while growing")
	require.NoError(t, j.Close())
	j2, err := OpenJournal(dir)
	require.NoError(t, err)
	defer j2.Close()
	got, err := j2.Get(context.Background(), l.IP)
	require.NoError(t, err)
	assert.Equal(t, l.Rev, got.Rev)
	assert.Equal(t, 1, j2.Len())
}
