//go:build unix

package profile_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/profile"
)

// loadOrHang runs LoadFS and reports its error. A loader that opens a FIFO
// blocks until a writer appears; the test then fails (instead of hanging
// until the test binary's timeout) and releases the loader by opening the
// FIFO for writing. The wait is a hang detector, not a speed limit.
func loadOrHang(t *testing.T, fsys fs.FS, fifo string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := profile.LoadFS(fsys)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = f.Close()
		}
		<-done
		t.Fatalf("LoadFS blocked opening the FIFO %s", fifo)
		return nil
	}
}

// TestLoadRefusesFIFO: a FIFO in the data directory (issue #14: it hung
// start-up and every later SIGHUP) is refused with an error naming it,
// without being opened, through os.DirFS and os.Root.FS alike.
func TestLoadRefusesFIFO(t *testing.T) {
	for _, name := range []string{"groups/fifo.json", "profiles/fifo.json", "ignition/fifo.yaml.tmpl", "generic/sub/fifo"} {
		for _, kind := range []string{"DirFS", "Root.FS"} {
			t.Run(name+"/"+kind, func(t *testing.T) {
				dir := dataDir(t)
				fifo := filepath.Join(dir, name)
				require.NoError(t, os.MkdirAll(filepath.Dir(fifo), 0o755))
				require.NoError(t, syscall.Mkfifo(fifo, 0o644))
				fsys := os.DirFS(dir)
				if kind == "Root.FS" {
					root, err := os.OpenRoot(dir)
					require.NoError(t, err)
					t.Cleanup(func() { _ = root.Close() })
					fsys = root.FS()
				}
				err := loadOrHang(t, fsys, fifo)
				require.Error(t, err)
				assert.ErrorIs(t, err, profile.ErrInvalid)
				assert.Contains(t, err.Error(), name)
				assert.Contains(t, err.Error(), "not a regular file")
			})
		}
	}
}
