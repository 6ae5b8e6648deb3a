package tftpsrv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Chain returns a Handler that asks each handler in turn: the first
// answer that is not "not handled" (an error wrapping ErrNotHandled or
// fs.ErrNotExist) is the result; when no handler answers, the server's FS
// does. For example the first-stage GRUB configuration and the
// per-machine configuration of a Secure Boot machine on one server:
//
//	srv := &tftpsrv.Server{FS: root, Handler: tftpsrv.Chain(firstStage, perMachine)}
func Chain(handlers ...Handler) Handler {
	return HandlerFunc(func(ctx context.Context, req *Request) ([]byte, error) {
		for _, h := range handlers {
			b, err := h.ServeTFTP(ctx, req)
			if err == nil || !errors.Is(err, ErrNotHandled) && !errors.Is(err, fs.ErrNotExist) {
				return b, err
			}
		}
		return nil, ErrNotHandled
	})
}

// Mount returns a file system that serves root, except that names under
// dir (a valid path such as "assets") come from sub: "assets/vmlinuz" is
// sub's "vmlinuz". What root holds at dir is hidden. This is how one TFTP
// server serves GRUB's images and, for GRUB images without HTTP (Secure
// Boot), the kernels and initrds an HTTP server serves from another
// directory:
//
//	root, _ := tftpsrv.DirFS("/srv/tftp")
//	assets, _ := tftpsrv.DirFS("/srv/assets")
//	fsys, err := tftpsrv.Mount(root, "assets", assets)
//
// The result implements fs.StatFS (a Server stats before it opens) and
// fs.ReadLinkFS, delegating to root or sub; a sub that does not implement
// ReadLinkFS is asked Stat for Lstat, so it resolves its own links (its
// own policy decides which it follows), and the Server never sees a link
// there. A link in root that leads into dir is resolved inside root's
// tree by the Server, not into sub. dir must be a valid path other than
// ".".
func Mount(root fs.FS, dir string, sub fs.FS) (fs.FS, error) {
	if !fs.ValidPath(dir) || dir == "." {
		return nil, fmt.Errorf("%w: mount point %q: want a valid path such as \"assets\"", ErrConfig, dir)
	}
	if root == nil || sub == nil {
		return nil, fmt.Errorf("%w: Mount needs two file systems", ErrConfig)
	}
	return &mountFS{root: root, dir: dir, sub: sub}, nil
}

type mountFS struct {
	root fs.FS
	dir  string
	sub  fs.FS
}

// route returns the file system that holds name and the name there.
func (m *mountFS) route(op, name string) (fs.FS, string, error) {
	if !fs.ValidPath(name) {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == m.dir {
		return m.sub, ".", nil
	}
	if rest, ok := strings.CutPrefix(name, m.dir+"/"); ok {
		return m.sub, rest, nil
	}
	return m.root, name, nil
}

func (m *mountFS) Open(name string) (fs.File, error) {
	fsys, n, err := m.route("open", name)
	if err != nil {
		return nil, err
	}
	return fsys.Open(n)
}

func (m *mountFS) Stat(name string) (fs.FileInfo, error) {
	fsys, n, err := m.route("stat", name)
	if err != nil {
		return nil, err
	}
	return fs.Stat(fsys, n)
}

func (m *mountFS) Lstat(name string) (fs.FileInfo, error) {
	fsys, n, err := m.route("lstat", name)
	if err != nil {
		return nil, err
	}
	if rl, ok := fsys.(fs.ReadLinkFS); ok {
		return rl.Lstat(n)
	}
	return fs.Stat(fsys, n)
}

func (m *mountFS) ReadLink(name string) (string, error) {
	fsys, n, err := m.route("readlink", name)
	if err != nil {
		return "", err
	}
	rl, ok := fsys.(fs.ReadLinkFS)
	if !ok {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: errors.ErrUnsupported}
	}
	target, err := rl.ReadLink(n)
	if err != nil {
		return "", err
	}
	if fsys == m.sub && !strings.HasPrefix(target, "/") {
		// A relative link inside sub: the Server joins it to the link's
		// directory in the mounted tree, where ".." above sub's top
		// would land in root. Refuse such a target here (as leaving the
		// tree), so the Server cannot be led from sub into root.
		if j := path.Join(path.Dir(n), target); j == ".." || strings.HasPrefix(j, "../") {
			return "", &fs.PathError{Op: "readlink", Path: name, Err: fmt.Errorf("%w: links out of the mounted tree", ErrEscape)}
		}
	}
	return target, nil
}
