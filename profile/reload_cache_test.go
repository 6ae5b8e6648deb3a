//go:build linux || darwin || freebsd

package profile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countFS counts the files opened through it; listings and stats pass
// through to the directory.
type countFS struct {
	fs.FS
	opens atomic.Int64
}

// group finds a group by ID.
func group(t *testing.T, inv *Inventory, id string) (*Group, bool) {
	t.Helper()
	for _, g := range inv.Groups() {
		if g.ID == id {
			return g, true
		}
	}
	return nil, false
}

func (c *countFS) Open(name string) (fs.File, error) {
	if strings.HasSuffix(name, ".json") {
		c.opens.Add(1)
	}
	return c.FS.Open(name)
}

func (c *countFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(c.FS, name) }
func (c *countFS) Stat(name string) (fs.FileInfo, error)      { return fs.Stat(c.FS, name) }

// TestReloadReadsOnlyChangedFiles: a reload opens only the files that
// changed since the last load (same size included), sees added and
// removed files, and files changed within the racy window are read again.
func TestReloadReadsOnlyChangedFiles(t *testing.T) {
	old := racyWindow
	racyWindow = 50 * time.Millisecond
	t.Cleanup(func() { racyWindow = old })

	dir := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	write("profiles/p.json", `{"id": "p", "boot": {"kernel": "/k"}}`)
	body := func(i int, host string) string {
		return fmt.Sprintf(`{"id": "g%03d", "profile": "p", "selector": {"mac": "52:54:00:00:00:%02x"}, "metadata": {"hostname": "%s"}}`, i, i, host)
	}
	for i := range 100 {
		write(fmt.Sprintf("groups/g%03d.json", i), body(i, "aaaa"))
	}
	time.Sleep(3 * racyWindow) // every file is older than the window

	cfs := &countFS{FS: os.DirFS(dir)}
	s, err := OpenFS(cfs, nil, nil)
	require.NoError(t, err)
	assert.EqualValues(t, 101, cfs.opens.Load(), "the first load reads every file")

	cfs.opens.Store(0)
	require.NoError(t, s.Reload())
	assert.EqualValues(t, 0, cfs.opens.Load(), "nothing changed: nothing read")

	// The same size, other content; a file removed, a file added.
	write("groups/g005.json", body(5, "bbbb"))
	require.NoError(t, os.Remove(filepath.Join(dir, "groups/g006.json")))
	write("groups/g100.json", body(100, "cccc"))
	cfs.opens.Store(0)
	require.NoError(t, s.Reload())
	assert.EqualValues(t, 2, cfs.opens.Load(), "the changed and the new file")
	inv := s.Inventory()
	g, ok := group(t, inv, "g005")
	require.True(t, ok)
	assert.Equal(t, "bbbb", g.Metadata["hostname"])
	_, ok = group(t, inv, "g006")
	assert.False(t, ok, "removed")
	_, ok = group(t, inv, "g100")
	assert.True(t, ok, "added")

	// Those two were changed within the window: read again once more,
	// then, once they are old enough, not any more.
	cfs.opens.Store(0)
	require.NoError(t, s.Reload())
	assert.EqualValues(t, 2, cfs.opens.Load(), "racy files are read again")
	time.Sleep(3 * racyWindow)
	require.NoError(t, s.Reload())
	cfs.opens.Store(0)
	require.NoError(t, s.Reload())
	assert.EqualValues(t, 0, cfs.opens.Load())

	// An edit right after a load, with the same size: seen.
	write("groups/g007.json", body(7, "dddd"))
	require.NoError(t, s.Reload())
	g, _ = group(t, s.Inventory(), "g007")
	assert.Equal(t, "dddd", g.Metadata["hostname"])
	write("groups/g007.json", body(7, "eeee"))
	require.NoError(t, s.Reload())
	g, _ = group(t, s.Inventory(), "g007")
	assert.Equal(t, "eeee", g.Metadata["hostname"])
}
