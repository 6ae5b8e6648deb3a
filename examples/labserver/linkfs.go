package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ownerLinkFS serves a directory the way an operator who symlinks image
// directories into it expects (matchbox users do): symbolic links are
// followed, wherever they point, when they belong to the owner of the
// tree's top directory (Apache's SymLinksIfOwnerMatch). A link owned by
// someone else is refused. Request paths themselves cannot climb out:
// they must be fs.ValidPath (no "..", no leading "/").
type ownerLinkFS struct {
	dir  string
	uid  int // owner of dir; -1 where the system has no owners
	fsys fs.FS
}

func newOwnerLinkFS(dir string) (*ownerLinkFS, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	return &ownerLinkFS{dir: dir, uid: fileOwner(st), fsys: os.DirFS(dir)}, nil
}

// check refuses name when a symbolic link on its way is not the tree
// owner's.
func (o *ownerLinkFS) check(op, name string) error {
	if !fs.ValidPath(name) {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." || o.uid < 0 {
		return nil
	}
	p := o.dir
	for _, el := range strings.Split(name, "/") {
		p = filepath.Join(p, el)
		fi, err := os.Lstat(p)
		if err != nil {
			return &fs.PathError{Op: op, Path: name, Err: err}
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if owner := fileOwner(fi); owner != o.uid {
				return &fs.PathError{Op: op, Path: name,
					Err: fmt.Errorf("%w: symbolic link %s is owned by uid %d, not by the tree's owner (uid %d)", fs.ErrPermission, el, owner, o.uid)}
			}
		}
	}
	return nil
}

func (o *ownerLinkFS) Open(name string) (fs.File, error) {
	if err := o.check("open", name); err != nil {
		return nil, err
	}
	return o.fsys.Open(name)
}

// Stat stats without opening (a FIFO must not be opened).
func (o *ownerLinkFS) Stat(name string) (fs.FileInfo, error) {
	if err := o.check("stat", name); err != nil {
		return nil, err
	}
	return fs.Stat(o.fsys, name)
}
