// Package etcdprofile keeps a matchbox-compatible inventory (profiles,
// groups, Ignition and generic templates) in etcd, so several servers
// serve the same one and a change reaches all of them without a restart.
//
// Each file of a data directory is one key: <prefix>profiles/<id>.json,
// <prefix>groups/<id>.json, <prefix>ignition/<name>, <prefix>generic/<name>.
// [Import] copies a data directory in (checked with [profile.LoadFS]
// first: a broken directory is refused whole) and [Export] writes one
// back out.
//
// [Open] returns a [Store] that implements [profile.Store]: it loads the
// keys, then watches them. Every change is loaded as a whole inventory
// and checked ([profile.LoadFS] plus Options.Check) before it replaces the
// one served; a change that does not load (a group naming a missing
// profile, a template that does not compile …) is rejected, logged and
// remembered in [Store.Err], and the last good inventory keeps serving,
// as a failed reload of a data directory does. While etcd is unreachable
// the last inventory keeps serving too.
package etcdprofile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing/fstest"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/metalboot/metalboot/internal/etcdmirror"
	"github.com/metalboot/metalboot/profile"
)

// DefaultPrefix is the key prefix when Options.Prefix is empty.
const DefaultPrefix = "/metalboot/inventory/"

// Dirs are the data directory's subdirectories that are stored.
var Dirs = []string{"profiles", "groups", "ignition", "generic"}

// Options configure [Open].
type Options struct {
	// Prefix is prepended to every key ("": DefaultPrefix); it must end
	// in "/".
	Prefix string
	// Check, when set, runs on every inventory loaded from etcd before it
	// is served (e.g. compiling every template); an error rejects it.
	Check func(*profile.Inventory) error
	// OnReload (nil: none) is called after each change was served (err
	// nil) or rejected (err says why); on the watch's goroutine.
	OnReload func(inv *profile.Inventory, err error)
	// RequestTimeout bounds the first load (zero: 5 s).
	RequestTimeout time.Duration
	// Logger receives reload results; nil discards.
	Logger *slog.Logger
}

// Store serves the inventory under a prefix of etcd, current through a
// watch. Make it with [Open].
type Store struct {
	fs     *profile.FSStore
	tree   treeFS
	mirror *etcdmirror.Mirror
	opts   Options

	reloadMu sync.Mutex // one load at a time: the tree is swapped, then read
	mu       sync.Mutex
	lastErr  error
}

var _ profile.Store = (*Store)(nil)

// Open loads the inventory under the prefix and starts watching it. It
// fails when etcd does not answer, or when what is stored does not load:
// there is no previous inventory to keep then (import a good one with
// [Import]). Close stops the watch; it does not close cli.
func Open(ctx context.Context, cli *clientv3.Client, opts Options) (*Store, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		return nil, fmt.Errorf("etcdprofile: prefix %q does not end in /", opts.Prefix)
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{opts: opts}
	s.tree.cur.Store(&fstest.MapFS{})
	ready := make(chan struct{})
	m, err := etcdmirror.Open(ctx, cli, opts.Prefix, opts.RequestTimeout, func() {
		<-ready
		if s.fs != nil {
			s.reload()
		}
	}, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("etcdprofile: %w", err)
	}
	s.mirror = m
	s.tree.cur.Store(toMapFS(m.Snapshot()))
	fsStore, err := profile.OpenFS(&s.tree, opts.Check, opts.Logger)
	if err == nil {
		s.fs = fsStore
	}
	close(ready)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("etcdprofile: inventory under %s: %w", opts.Prefix, err)
	}
	return s, nil
}

// Inventory implements profile.Store: the last inventory that loaded.
func (s *Store) Inventory() *profile.Inventory { return s.fs.Inventory() }

// Reload loads what the store's mirror of etcd holds now, as the watch
// does after each change (for a SIGHUP handler that reloads every kind of
// store alike); on error the previous inventory stays.
func (s *Store) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.reloadLocked()
}

// Err returns why the last change was rejected, or why the watch is not
// running; nil when the inventory served is what etcd holds.
func (s *Store) Err() error {
	if err := s.mirror.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// WatchErr is nil while the watch runs; otherwise why it does not (the
// last inventory keeps serving meanwhile).
func (s *Store) WatchErr() error { return s.mirror.Err() }

// Close stops the watch.
func (s *Store) Close() error {
	s.mirror.Close()
	return nil
}

// reload loads the mirror's current content as a whole inventory.
func (s *Store) reload() {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	_ = s.reloadLocked()
}

func (s *Store) reloadLocked() error {
	s.tree.cur.Store(toMapFS(s.mirror.Snapshot()))
	err := s.fs.Reload() // keeps the previous inventory on error, and logs
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("etcdprofile: change under %s rejected, still serving the previous inventory: %w", s.opts.Prefix, err)
	}
	if s.opts.OnReload != nil {
		s.opts.OnReload(s.fs.Inventory(), err)
	}
	return err
}

// toMapFS turns mirrored keys (relative paths) into a file tree with the
// directories LoadFS expects.
func toMapFS(kv map[string][]byte) *fstest.MapFS {
	m := fstest.MapFS{}
	for _, d := range Dirs {
		m[d] = &fstest.MapFile{Mode: fs.ModeDir | 0o755}
	}
	for k, v := range kv {
		if !fs.ValidPath(k) {
			continue
		}
		m[k] = &fstest.MapFile{Data: v, Mode: 0o644}
	}
	return &m
}

// treeFS is an fs.FS whose content is replaced atomically by reload.
type treeFS struct {
	cur atomic.Pointer[fstest.MapFS]
}

func (t *treeFS) Open(name string) (fs.File, error) { return t.cur.Load().Open(name) }

// Import copies the data directory fsys into etcd under prefix,
// replacing whatever inventory was there: every key under prefix that is
// not a file of fsys is deleted. fsys is loaded with profile.LoadFS (and
// check, when not nil) first, and nothing is written when it does not
// load. Up to 127 files are written in one transaction, so watchers see
// the old inventory or the new one; a larger directory is written in
// several, the deletions last. It returns the number of files written.
func Import(ctx context.Context, cli *clientv3.Client, prefix string, fsys fs.FS, check func(*profile.Inventory) error) (int, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	inv, err := profile.LoadFS(fsys)
	if err == nil && check != nil {
		err = check(inv)
	}
	if err != nil {
		return 0, fmt.Errorf("etcdprofile: import refused, the data directory does not load: %w", err)
	}
	files := map[string][]byte{}
	for _, d := range Dirs {
		err := fs.WalkDir(fsys, d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && p == d {
					return fs.SkipDir
				}
				return err
			}
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				return nil
			}
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			files[p] = b
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("etcdprofile: import: %w", err)
		}
	}
	old, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, fmt.Errorf("etcdprofile: import: %w", err)
	}
	var ops []clientv3.Op
	for _, p := range slices.Sorted(maps.Keys(files)) {
		ops = append(ops, clientv3.OpPut(prefix+p, string(files[p])))
	}
	for _, kv := range old.Kvs {
		if _, keep := files[strings.TrimPrefix(string(kv.Key), prefix)]; !keep {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
	}
	const maxOps = 127 // etcd's default --max-txn-ops is 128
	for len(ops) > 0 {
		n := min(len(ops), maxOps)
		if _, err := cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return 0, fmt.Errorf("etcdprofile: import: %w", err)
		}
		ops = ops[n:]
	}
	return len(files), nil
}

// Export writes the inventory under prefix into dir as a data directory
// (profiles/, groups/, ignition/, generic/), creating dir if needed. It
// refuses to write into a dir that has any of those subdirectories
// already, so it never mixes two inventories. It returns the number of
// files written.
func Export(ctx context.Context, cli *clientv3.Client, prefix, dir string) (int, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	for _, d := range Dirs {
		if _, err := os.Lstat(filepath.Join(dir, d)); err == nil {
			return 0, fmt.Errorf("etcdprofile: export: %s already exists; export into an empty directory", filepath.Join(dir, d))
		}
	}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("etcdprofile: export: %w", err)
	}
	for _, d := range []string{"profiles", "groups"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return 0, err
		}
	}
	n := 0
	for _, kv := range resp.Kvs {
		rel := strings.TrimPrefix(string(kv.Key), prefix)
		top, _, _ := strings.Cut(rel, "/")
		if !fs.ValidPath(rel) || !slices.Contains(Dirs, top) || path.Clean(rel) != rel {
			return n, fmt.Errorf("etcdprofile: export: key %q is not a data directory file", kv.Key)
		}
		file := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return n, err
		}
		if err := os.WriteFile(file, kv.Value, 0o644); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
