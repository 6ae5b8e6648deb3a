//go:build linux || darwin || freebsd

package profile

import (
	"io/fs"
	"syscall"
	"time"
)

// fileKey identifies a file's content well enough to skip reading it
// again: the same device, inode, size, modification and status-change
// time (the status-change time cannot be set from user space, so
// `touch -d` cannot hide an edit).
type fileKey struct {
	dev, ino, size uint64
	mtime, ctime   int64
}

// keyOf returns info's fileKey; ok is false where the file system gives
// none (embed.FS, fstest.MapFS).
func keyOf(info fs.FileInfo) (fileKey, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{
		dev: uint64(st.Dev), ino: uint64(st.Ino), size: uint64(st.Size),
		mtime: info.ModTime().UnixNano(), ctime: ctimeOf(st).UnixNano(),
	}, true
}

func (k fileKey) changed() time.Time { return time.Unix(0, k.ctime) }
