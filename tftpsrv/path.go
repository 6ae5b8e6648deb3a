package tftpsrv

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"
)

// MaxPathLen is the longest file name, in bytes, that the server accepts.
// Longer names are refused with [ErrInvalidPath]. Boot loaders ask for names
// such as "grub/x86_64-efi/normal.mod" or "grub/grub.cfg-01-52-54-00-12-34-56",
// far below this limit.
const MaxPathLen = 255

// maxSymlinkHops bounds symlink resolution, like the kernel's ELOOP limit.
const maxSymlinkHops = 40

// CleanPath turns a file name received in a TFTP read request into the
// [fs.ValidPath] form used to open it: one leading "/" is stripped (firmware
// sends both "/grub/core.efi" and "grub/core.efi"), then the name must be a
// valid, non-empty fs path. Names that are longer than [MaxPathLen], contain a
// NUL, a backslash, a control character or invalid UTF-8, or that contain "."
// or ".." elements, empty elements or a second leading slash are refused with
// an error wrapping [ErrInvalidPath].
func CleanPath(name string) (string, error) {
	if len(name) > MaxPathLen {
		return "", fmt.Errorf("%w: name is %d bytes long (max %d)", ErrInvalidPath, len(name), MaxPathLen)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidPath, name)
	}
	for _, r := range name {
		switch {
		case r == 0:
			return "", fmt.Errorf("%w: %q contains NUL", ErrInvalidPath, name)
		case r == '\\':
			return "", fmt.Errorf("%w: %q contains a backslash", ErrInvalidPath, name)
		case r < 0x20 || r == 0x7f:
			return "", fmt.Errorf("%w: %q contains a control character", ErrInvalidPath, name)
		}
	}
	p := strings.TrimPrefix(name, "/")
	if p == "" || p == "." {
		return "", fmt.Errorf("%w: %q names no file", ErrInvalidPath, name)
	}
	if !fs.ValidPath(p) {
		return "", fmt.Errorf("%w: %q is not a valid path inside the tree", ErrInvalidPath, name)
	}
	return p, nil
}

// resolveInTree resolves symbolic links in name (a valid fs path) the way the
// kernel would, lexically, and returns the resolved path. It refuses any link
// whose target is absolute or leads outside the tree, so that an fs.FS which
// follows symlinks (os.DirFS) is never asked to open something outside its
// root. File systems that do not implement fs.ReadLinkFS are returned name
// unchanged: they cannot report links, and the FS itself decides.
func resolveInTree(fsys fs.FS, name string) (string, error) {
	rl, ok := fsys.(fs.ReadLinkFS)
	if !ok {
		return name, nil
	}
	rest := strings.Split(name, "/")
	cur := "" // resolved prefix, contains no symlinks
	hops := 0
	for len(rest) > 0 {
		elem := rest[0]
		rest = rest[1:]
		next := elem
		if cur != "" {
			next = cur + "/" + elem
		}
		fi, err := rl.Lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode().Type() != fs.ModeSymlink {
			cur = next
			continue
		}
		hops++
		if hops > maxSymlinkHops {
			return "", fmt.Errorf("%w: %q: too many levels of symbolic links", ErrEscape, name)
		}
		target, err := rl.ReadLink(next)
		if err != nil {
			return "", err
		}
		if target == "" || strings.HasPrefix(target, "/") || strings.Contains(target, "\\") {
			return "", fmt.Errorf("%w: %q links to %q", ErrEscape, next, target)
		}
		joined := path.Join(cur, target) // cur has no links: lexical ".." is exact
		if joined == ".." || strings.HasPrefix(joined, "../") {
			return "", fmt.Errorf("%w: %q links to %q", ErrEscape, next, target)
		}
		var parts []string
		if joined != "." {
			parts = strings.Split(joined, "/")
		}
		rest = append(parts, rest...)
		cur = ""
	}
	if cur == "" {
		return "", fmt.Errorf("%w: %q resolves to the root directory", ErrInvalidPath, name)
	}
	return cur, nil
}

// clientMessage returns the text sent to the client in the TFTP ERROR packet
// for err: short and without echoing the requested name.
func clientMessage(err error) string {
	switch {
	case errors.Is(err, ErrInvalidPath), errors.Is(err, ErrEscape):
		return "access violation: file name refused"
	case errors.Is(err, ErrReadOnly):
		return "access violation: read-only server"
	case errors.Is(err, fs.ErrNotExist):
		return "file not found"
	case errors.Is(err, ErrNotRegular):
		return "access violation: not a regular file"
	case errors.Is(err, ErrBusy), errors.Is(err, ErrClientBusy):
		return "server busy, try again"
	case errors.Is(err, fs.ErrPermission):
		return "access violation"
	default:
		return "server error"
	}
}
