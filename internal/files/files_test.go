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
