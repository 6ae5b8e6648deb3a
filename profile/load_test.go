package profile_test

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/profile"
)

// dataDir writes a minimal valid data directory under a temporary
// directory and returns its path.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"profiles/p.json":   `{"boot":{"kernel":"/k","args":["a={{.MAC}}"]}}`,
		"groups/g.json":     `{"profile":"p"}`,
		"ignition/t.tmpl":   "variant: flatcar\nversion: 1.0.0\n",
		"generic/readme.md": "hello",
	} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	_, err := profile.LoadFS(os.DirFS(dir))
	require.NoError(t, err, "the directory loads before anything is added")
	return dir
}

// TestLoadRefusesNonRegular: the same for any file that is not regular
// (a device in an fstest.MapFS) and for a directory named like a profile.
func TestLoadRefusesNonRegular(t *testing.T) {
	fsys := fstest.MapFS{
		"profiles/p.json":   {Data: []byte(`{"boot":{"kernel":"/k"}}`)},
		"groups/g.json":     {Data: []byte(`{"profile":"p"}`)},
		"groups/dev.json":   {Data: []byte(`{"profile":"p"}`), Mode: fs.ModeDevice | fs.ModeCharDevice},
		"ignition/sock":     {Mode: fs.ModeSocket},
		"profiles/d.json/x": {Data: []byte("{}")},
	}
	_, err := profile.LoadFS(fsys)
	require.Error(t, err)
	for _, name := range []string{"groups/dev.json", "ignition/sock", "profiles/d.json"} {
		assert.Contains(t, err.Error(), name+": not a regular file")
	}
}

// countingFS wraps a file system and counts the bytes read from each file.
// It implements only fs.FS, so every read the loader does goes through it.
type countingFS struct {
	fs.FS
	mu   sync.Mutex
	read map[string]int64
}

func (c *countingFS) Open(name string) (fs.File, error) {
	f, err := c.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return &countingFile{File: f, name: name, c: c}, nil
}

func (c *countingFS) bytesRead(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read[name]
}

type countingFile struct {
	fs.File
	name string
	c    *countingFS
}

func (f *countingFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.c.mu.Lock()
	f.c.read[f.name] += int64(n)
	f.c.mu.Unlock()
	return n, err
}

// ReadDir keeps directories listable through the wrapper.
func (f *countingFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if d, ok := f.File.(fs.ReadDirFile); ok {
		return d.ReadDir(n)
	}
	return nil, &fs.PathError{Op: "readdir", Path: f.name, Err: fs.ErrInvalid}
}

// TestLoadRefusesLargeFileUnread: a 300 MB file (sparse: no disk needed)
// in groups/ or ignition/ is refused from its size, before a byte of it is
// read (issue #14: it was read whole before the size check).
func TestLoadRefusesLargeFileUnread(t *testing.T) {
	for _, name := range []string{"groups/big.json", "profiles/big.json", "ignition/big.tmpl"} {
		t.Run(name, func(t *testing.T) {
			dir := dataDir(t)
			big := filepath.Join(dir, name)
			f, err := os.Create(big)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			require.NoError(t, os.Truncate(big, 300<<20))
			fsys := &countingFS{FS: os.DirFS(dir), read: map[string]int64{}}
			_, err = profile.LoadFS(fsys)
			require.Error(t, err)
			assert.ErrorIs(t, err, profile.ErrInvalid)
			assert.Contains(t, err.Error(), name+": larger than")
			assert.Zero(t, fsys.bytesRead(name), "the file was read")
			assert.NotZero(t, fsys.bytesRead("groups/g.json"), "the other files were read through the counting wrapper")
		})
	}
}

// growingFS has one file whose Stat says it is small while reading it
// yields 16 MiB: a file that grows between Stat and read.
// It implements only fs.FS, so every read goes through Open.
type growingFS struct {
	files fstest.MapFS
	name  string
	read  int64
}

func (g *growingFS) Open(name string) (fs.File, error) {
	if name != g.name {
		return g.files.Open(name)
	}
	f, err := g.files.Open(name)
	if err != nil {
		return nil, err
	}
	return &growingFile{File: f, g: g, left: 16 << 20}, nil
}

type growingFile struct {
	fs.File
	g    *growingFS
	left int64
}

func (f *growingFile) Read(p []byte) (int, error) {
	if f.left == 0 {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > f.left {
		n = f.left
	}
	for i := range p[:n] {
		p[i] = ' '
	}
	f.left -= n
	f.g.read += n
	return int(n), nil
}

// TestLoadBoundsRead: reading is bounded too, so a file that grows after
// its size was checked is not read whole.
func TestLoadBoundsRead(t *testing.T) {
	for _, name := range []string{"groups/g.json", "ignition/t.tmpl"} {
		t.Run(name, func(t *testing.T) {
			g := &growingFS{name: name, files: fstest.MapFS{
				"profiles/p.json": {Data: []byte(`{"boot":{"kernel":"/k"}}`)},
				"groups/g.json":   {Data: []byte(`{"profile":"p"}`)},
				"ignition/t.tmpl": {Data: []byte("x")},
			}}
			_, err := profile.LoadFS(g)
			require.Error(t, err)
			assert.Contains(t, err.Error(), name+": larger than")
			assert.LessOrEqual(t, g.read, int64(4<<20)+1, "read beyond the limit")
			assert.True(t, strings.Contains(err.Error(), "4194304"), err.Error())
		})
	}
}

// TestFailedLoadShowsWarnings: the warning that explains a failed load (a
// typo'd "selecter" makes two groups equally specific) comes with the
// error, not only in a log nobody reads after a failure (issue #16).
func TestFailedLoadShowsWarnings(t *testing.T) {
	fsys := fstest.MapFS{
		"profiles/p.json": {Data: []byte(`{"id": "p", "boot": {"kernel": "/k"}}`)},
		"groups/a.json":   {Data: []byte(`{"id": "a", "profile": "p", "selecter": {"mac": "52:54:00:00:00:01"}}`)},
		"groups/b.json":   {Data: []byte(`{"id": "b", "profile": "p"}`)},
	}
	_, err := profile.LoadFS(fsys)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "equally specific")
	assert.Contains(t, err.Error(), `groups/a.json: ignored: unknown field "selecter"`)
}
