// Package files holds what several servers do alike with the files they
// serve or keep: name the kind of a file that is not a regular file, for
// the errors and logs of everything that refuses one (profile's loader,
// tftpsrv, labserver's /assets and state files; opening a FIFO blocks
// until a writer comes, and a device or socket is never boot data), and
// move a damaged state file aside without ever replacing another file
// (dhcpsrv.MoveAside for a lease journal, labserver for its install
// state), and copy a boot file into a served tree so that no server ever
// serves half of it (grubcfg's Secure Boot files, ipxe's binaries, the
// e2e harness's kernels and firmware variables).
package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Kind returns the kind of file mode m names, in words: "regular file",
// "directory", "named pipe (FIFO)", "socket", "character device",
// "device", "symbolic link", or "irregular file" with the mode bits.
func Kind(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "regular file"
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "device"
	case t&fs.ModeSymlink != 0:
		return "symbolic link"
	default:
		return "irregular file " + t.String()
	}
}

// MoveAside renames path to path + ".corrupt-" + the current UTC time
// (with nanoseconds; ".1", ".2"… added if that name is taken), never over
// an existing file, fsyncs the directory and returns the new name. It
// links the new name then removes the old one, so an existing name is
// never replaced; on a file system without hard links it renames, after
// checking the name is free (the caller keeps other writers out).
func MoveAside(path string) (string, error) {
	base := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s.%d", base, i)
		}
		if _, err := os.Lstat(name); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		err := os.Link(path, name)
		switch {
		case errors.Is(err, fs.ErrExist):
			continue
		case err == nil:
			err = os.Remove(path)
		case errors.Is(err, fs.ErrNotExist):
			return "", err
		default: // no hard links here
			err = os.Rename(path, name)
		}
		if err != nil {
			return "", err
		}
		return name, SyncDir(filepath.Dir(path))
	}
}

// SyncDir fsyncs directory dir, so that a file created, renamed or
// removed in it stays so after a power cut.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// CopyAtomic copies src to dst (mode 0644), making dst's directory,
// through a temporary file beside dst that is renamed into place: a
// server reading dst meanwhile sees the old file or the new one, never
// half of it.
func CopyAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
