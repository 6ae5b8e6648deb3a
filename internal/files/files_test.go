package files_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/internal/files"
)

func TestKind(t *testing.T) {
	for m, want := range map[fs.FileMode]string{
		0o644:                             "regular file",
		fs.ModeDir | 0o755:                "directory",
		fs.ModeNamedPipe | 0o600:          "named pipe (FIFO)",
		fs.ModeSocket:                     "socket",
		fs.ModeDevice | fs.ModeCharDevice: "character device",
		fs.ModeDevice:                     "device",
		fs.ModeSymlink | 0o777:            "symbolic link",
		fs.ModeIrregular:                  "irregular file ?---------",
	} {
		assert.Equal(t, want, files.Kind(m), "mode %v", m)
	}
}

// MoveAside keeps the file's bytes under a new name beside it and never
// replaces a file that already has a name it would take.
func TestMoveAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	var moved []string
	for i := range 3 { // the same second, even the same nanosecond, three times
		content := []byte{'0' + byte(i)}
		require.NoError(t, os.WriteFile(path, content, 0o600))
		name, err := files.MoveAside(path)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(name, path+".corrupt-"), name)
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		assert.Equal(t, content, b, "the evidence is kept")
		_, err = os.Lstat(path)
		assert.ErrorIs(t, err, fs.ErrNotExist, "the old name is gone")
		moved = append(moved, name)
	}
	assert.Len(t, map[string]bool{moved[0]: true, moved[1]: true, moved[2]: true}, 3)

	_, err := files.MoveAside(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

// CopyAtomic makes the directory, replaces an existing file whole, leaves
// mode 0644 and no temporary file behind.
func TestCopyAtomic(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	require.NoError(t, os.WriteFile(src, []byte("new contents"), 0o600))
	dst := filepath.Join(dir, "tree", "sub", "boot.efi")
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	require.NoError(t, os.WriteFile(dst, []byte("old"), 0o600))
	require.NoError(t, files.CopyAtomic(src, dst))
	b, err := os.ReadFile(dst)
	require.NoError(t, err)
	assert.Equal(t, "new contents", string(b))
	st, err := os.Stat(dst)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o644), st.Mode().Perm())
	entries, err := os.ReadDir(filepath.Dir(dst))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left")

	require.NoError(t, files.CopyAtomic(src, filepath.Join(dir, "made", "here")), "the directory is made")
	assert.ErrorIs(t, files.CopyAtomic(filepath.Join(dir, "missing"), dst), fs.ErrNotExist)
}
