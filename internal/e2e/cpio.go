//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// File modes of the cpio newc format (the S_IF* values of the Linux kernel).
const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// ErrCPIOClosed is returned by a [CPIOWriter] used after Close.
var ErrCPIOClosed = errors.New("e2e: cpio writer closed")

// CPIOWriter writes a cpio archive in the SVR4 "newc" format (magic
// 070701), the format the Linux kernel unpacks as an initramfs. It is a
// minimal writer: names are taken as given (no leading slash), all entries
// are owned by root, and hard links are not supported.
type CPIOWriter struct {
	w      io.Writer
	ino    uint32
	closed bool
	err    error
}

// NewCPIOWriter returns a writer that appends archive entries to w. Call
// Close to write the trailer.
func NewCPIOWriter(w io.Writer) *CPIOWriter {
	return &CPIOWriter{w: w, ino: 1}
}

// Dir adds a directory entry with permission bits perm (e.g. 0o755).
func (c *CPIOWriter) Dir(name string, perm uint32) error {
	return c.entry(name, modeDir|perm&0o7777, 0, 0, nil)
}

// File adds a regular file with permission bits perm and contents data.
func (c *CPIOWriter) File(name string, perm uint32, data []byte) error {
	return c.entry(name, modeFile|perm&0o7777, 0, 0, data)
}

// Symlink adds a symbolic link name pointing at target.
func (c *CPIOWriter) Symlink(name, target string) error {
	return c.entry(name, modeSymlink|0o777, 0, 0, []byte(target))
}

// CharDev adds a character device node (e.g. /dev/console is 5:1), which
// lets the kernel open the console before init runs, without mknod
// privileges on the machine building the archive.
func (c *CPIOWriter) CharDev(name string, perm uint32, major, minor uint32) error {
	return c.entry(name, modeCharDev|perm&0o7777, major, minor, nil)
}

// Close writes the TRAILER!!! entry. The underlying writer is not closed.
func (c *CPIOWriter) Close() error {
	if c.closed {
		return c.err
	}
	err := c.raw("TRAILER!!!", 0, 0, 0, 0, nil)
	c.closed = true
	if c.err == nil {
		c.err = err
	}
	return err
}

func (c *CPIOWriter) entry(name string, mode, rmaj, rmin uint32, data []byte) error {
	if c.closed {
		return ErrCPIOClosed
	}
	if c.err != nil {
		return c.err
	}
	clean := strings.TrimPrefix(path.Clean("/"+name), "/")
	if clean == "" || clean == "TRAILER!!!" {
		return fmt.Errorf("e2e: cpio: invalid entry name %q", name)
	}
	ino := c.ino
	c.ino++
	if err := c.raw(clean, ino, mode, rmaj, rmin, data); err != nil {
		c.err = err
		return err
	}
	return nil
}

func (c *CPIOWriter) raw(name string, ino, mode, rmaj, rmin uint32, data []byte) error {
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	// 13 fields of 8 hex digits after the 6-byte magic: ino, mode, uid, gid,
	// nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
	// namesize (with NUL), check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+8+len(data)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	if _, err := c.w.Write(buf); err != nil {
		return fmt.Errorf("e2e: cpio: write %s: %w", name, err)
	}
	return nil
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
