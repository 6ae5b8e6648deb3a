package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metalboot/metalboot/internal/files"
	"github.com/metalboot/metalboot/internal/par"
)

// Store gives the current inventory. Implementations must be safe for
// concurrent use; the inventory returned is immutable, so a caller may keep
// using it while the store reloads.
//
// Inventory returns an in-memory snapshot and must not do I/O per call:
// it is called on every request (/grub, /ignition, DHCP reservations, DNS
// records), often several times. A store backed by files reloads on demand
// ([FSStore.Reload]); a networked store (etcd, a database) keeps its
// snapshot current by watching and swaps it atomically, keeping the
// previous snapshot while the backend is unreachable. That is why
// Inventory takes no context: there is nothing to wait for.
type Store interface {
	Inventory() *Inventory
}

// LoadFS reads a matchbox-compatible data directory:
//
//	profiles/<id>.json   Profile; its key is the file name, as in matchbox
//	groups/<id>.json     Group
//	ignition/<name>      Ignition JSON or Butane YAML templates
//	generic/<name>       free-form templates (optional)
//
// profiles/ and groups/ must exist. Every problem is reported (file, line
// for JSON syntax errors, reason) and nothing is half-loaded: on error the
// inventory is nil. Each file must be a regular file (a FIFO, socket,
// device or directory where a file is expected is an error naming it, and
// is never opened) of at most 4 MiB (refused from its size, unread). A JSON "id" that disagrees with the file name is a
// warning (Inventory.Warnings), not an override.
func LoadFS(fsys fs.FS) (*Inventory, error) {
	return loadFS(fsys, nil)
}

// loadFS is LoadFS; with c, files unchanged since c was filled (see
// fileKey) are taken from c instead of read and decoded again, and c is
// refilled with this load's files.
func loadFS(fsys fs.FS, c *loadCache) (*Inventory, error) {
	if c == nil {
		c = &loadCache{}
	}
	var d Data
	var errs []error
	var warns []Warning
	fail := func(file string, err error) { errs = append(errs, fmt.Errorf("%w: %s: %v", ErrInvalid, file, err)) }

	for _, dir := range []string{"profiles", "groups"} {
		if st, err := fs.Stat(fsys, dir); err != nil || !st.IsDir() {
			fail(dir+"/", errors.New("missing directory: not a matchbox data directory?"))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	files, err := listJSON(fsys, "profiles")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var profiles []decoded[Profile]
	profiles, c.profiles = decodeAll(fsys, files, c.profiles, start)
	for i, e := range files {
		file, p := e.path, profiles[i]
		if p.err != nil {
			fail(file, p.err)
			continue
		}
		key := strings.TrimSuffix(path.Base(file), ".json")
		if p.v.ID != "" && p.v.ID != key {
			warns = append(warns, Warning{File: file, Msg: fmt.Sprintf("id %q differs from the file name; the profile is known as %q (matchbox behaviour)", p.v.ID, key)})
		}
		warns = append(warns, p.warns...)
		p.v.ID, p.v.Source = key, file
		d.Profiles = append(d.Profiles, p.v)
	}
	files, err = listJSON(fsys, "groups")
	if err != nil {
		return nil, err
	}
	var groups []decoded[Group]
	groups, c.groups = decodeAll(fsys, files, c.groups, start)
	d.Groups = make([]Group, 0, len(files))
	for i, e := range files {
		file, g := e.path, groups[i]
		if g.err != nil {
			fail(file, g.err)
			continue
		}
		key := strings.TrimSuffix(path.Base(file), ".json")
		if g.v.ID == "" {
			g.v.ID = key
		} else if g.v.ID != key {
			warns = append(warns, Warning{File: file, Msg: fmt.Sprintf("id %q differs from the file name %q", g.v.ID, key)})
		}
		warns = append(warns, g.warns...)
		g.v.Source = file
		d.Groups = append(d.Groups, g.v)
	}
	for _, dir := range []string{"ignition", "generic"} {
		m, err := readTree(fsys, dir)
		if err != nil {
			fail(dir+"/", err)
			continue
		}
		if dir == "ignition" {
			d.Templates = m
		} else {
			d.Generic = m
		}
	}
	// A failed load says what was ignored too: a typo'd key ("selecter")
	// is often why groups end up equally specific.
	withWarnings := func(err error) error {
		for _, w := range warns {
			err = fmt.Errorf("%w\n(warning) %s", err, w)
		}
		return err
	}
	if len(errs) > 0 {
		return nil, withWarnings(errors.Join(errs...))
	}
	inv, err := New(d)
	if err != nil {
		return nil, withWarnings(err)
	}
	inv.warnings = append(warns, inv.warnings...)
	sort.SliceStable(inv.warnings, func(i, j int) bool { return inv.warnings[i].File < inv.warnings[j].File })
	return inv, nil
}

// maxFile bounds every file read from a data directory.
const maxFile = 4 << 20

// dirFile is a file found in a data directory's listing.
type dirFile struct {
	path  string
	entry fs.DirEntry
}

// listJSON lists dir/*.json, sorted, from the directory listing alone:
// nothing is opened yet.
func listJSON(fsys fs.FS, dir string) ([]dirFile, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []dirFile
	for _, e := range entries {
		if ok, _ := path.Match("*.json", e.Name()); ok {
			out = append(out, dirFile{path: dir + "/" + e.Name(), entry: e})
		}
	}
	return out, nil
}

// readFile reads one file of a data directory. It must be a regular file:
// the type is checked from the directory entry (or, for a symbolic link,
// fs.Stat of its target) before the file is opened, because opening a
// FIFO blocks until a writer comes (it hung start-up and every later
// reload). A file larger than maxFile is refused from its size, unread,
// and reading is bounded too, so a file that grows meanwhile is not read
// whole. fs.FS has no non-blocking open: a regular file replaced by a FIFO
// between the check and the open can still block.
func readFile(fsys fs.FS, f dirFile) ([]byte, fs.FileInfo, error) {
	var info fs.FileInfo
	var err error
	switch t := f.entry.Type(); {
	case t&fs.ModeSymlink != 0:
		info, err = fs.Stat(fsys, f.path) // follows the link
	case t.IsRegular():
		// The listing's type says regular: opening cannot block, and the
		// size is checked on the open file below (one system call fewer
		// per file, which a directory of 100 000 groups notices).
	default:
		info, err = f.entry.Info()
	}
	if err != nil {
		return nil, nil, err
	}
	if info != nil {
		if err := regularAndSmall(info); err != nil {
			return nil, nil, err
		}
	}
	file, err := fsys.Open(f.path)
	if err != nil {
		return nil, nil, err
	}
	defer file.Close()
	info, err = file.Stat()
	if err == nil {
		if err := regularAndSmall(info); err != nil {
			return nil, nil, err
		}
	} else {
		info = nil
	}
	b, err := io.ReadAll(io.LimitReader(file, maxFile+1))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > maxFile {
		return nil, nil, fmt.Errorf("larger than %d bytes (it grew while being read)", maxFile)
	}
	return b, info, nil
}

func regularAndSmall(info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", files.Kind(info.Mode()))
	}
	if info.Size() > maxFile {
		return fmt.Errorf("larger than %d bytes (%d bytes)", maxFile, info.Size())
	}
	return nil
}

// decoded is one file decoded by decodeAll.
type decoded[T any] struct {
	v     T
	warns []Warning
	err   error
	key   fileKey // zero: not to be cached
}

// loadCache keeps the decoded files of the last load of an FSStore, so a
// reload reads only what changed: with 100 000 groups, a reload is then a
// stat per file instead of an open, two reads, a close and a JSON decode.
type loadCache struct {
	profiles map[string]decoded[Profile]
	groups   map[string]decoded[Group]
}

// racyWindow: a file changed this close to a load is not cached. File
// times come from a coarse clock, so a file rewritten with the same size
// within one tick of the load that read it would keep its key (git's
// "racy" index entries); such a file is read again on the next load.
var racyWindow = 2 * time.Second

// decodeAll reads and decodes files, in parallel (a data directory of
// 100 000 groups is 100 000 files: the time is in opening them), and
// returns the results in the order of files, and the cache for the next
// load. A file whose fileKey equals its entry in cache is not read.
func decodeAll[T any](fsys fs.FS, files []dirFile, cache map[string]decoded[T], start time.Time) ([]decoded[T], map[string]decoded[T]) {
	out := make([]decoded[T], len(files))
	one := func(i int) {
		f := files[i]
		if c, ok := cache[f.path]; ok && f.entry.Type().IsRegular() {
			if info, err := f.entry.Info(); err == nil {
				if k, ok := keyOf(info); ok && k == c.key {
					out[i] = c
					return
				}
			}
		}
		var info fs.FileInfo
		info, out[i].warns, out[i].err = decodeFile(fsys, f, &out[i].v)
		if out[i].err == nil && info != nil {
			if k, ok := keyOf(info); ok && start.Sub(info.ModTime()) > racyWindow && start.Sub(k.changed()) > racyWindow {
				out[i].key = k
			}
		}
	}
	par.Do(len(files), 64, one)
	next := make(map[string]decoded[T], len(files))
	for i, f := range files {
		if out[i].key != (fileKey{}) {
			next[f.path] = out[i]
		}
	}
	return out, next
}

// decodeFile reads one JSON object into v. Keys the loader ignores
// (likely typos) are warnings: the file is decoded strictly first and,
// only when that finds an unknown key, again leniently.
func decodeFile[T any](fsys fs.FS, f dirFile, v *T) (fs.FileInfo, []Warning, error) {
	b, info, err := readFile(fsys, f)
	if err != nil {
		return nil, nil, err
	}
	var warns []Warning
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err != nil && strings.Contains(err.Error(), "unknown field") {
		warns = []Warning{{File: f.path, Msg: "ignored: " + strings.TrimPrefix(err.Error(), "json: ")}}
		var zero T
		*v = zero
		dec = json.NewDecoder(bytes.NewReader(b))
		err = dec.Decode(v)
	}
	if err != nil {
		return nil, nil, jsonError(b, err)
	}
	if dec.More() {
		return nil, nil, errors.New("trailing data after the JSON object")
	}
	return info, warns, nil
}

// jsonError adds a line and column to encoding/json errors.
func jsonError(b []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 {
		return err
	}
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(b[:off], '\n'))
	return fmt.Errorf("line %d, column %d: %w", line, col, err)
}

// readTree reads every file under dir (hidden ones excepted) with
// readFile; every problem is reported, each naming its file.
func readTree(fsys fs.FS, dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if _, err := fs.Stat(fsys, dir); errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	var errs []error
	err := fs.WalkDir(fsys, dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			return nil
		}
		b, _, err := readFile(fsys, dirFile{path: p, entry: e})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			return nil
		}
		out[strings.TrimPrefix(p, dir+"/")] = b
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// FSStore is a Store backed by a data directory, reloadable on demand (e.g.
// on SIGHUP). Reads never block on a reload; a failed reload keeps the
// previous inventory.
type FSStore struct {
	// FS is the data directory (os.DirFS, embed.FS via fs.Sub, fstest.MapFS).
	FS fs.FS
	// Check, when set, runs on every newly loaded inventory before it is
	// used (e.g. the ignition package compiling every template); an error
	// rejects the load.
	Check func(*Inventory) error
	// Logger receives warnings and reload results; nil discards.
	Logger *slog.Logger

	mu    sync.Mutex // serialises reloads
	cur   atomic.Pointer[Inventory]
	cache loadCache // the files of the last successful load, under mu
}

// OpenFS loads fsys into a new FSStore. check may be nil.
func OpenFS(fsys fs.FS, check func(*Inventory) error, logger *slog.Logger) (*FSStore, error) {
	s := &FSStore{FS: fsys, Check: check, Logger: logger}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Inventory returns the current inventory (an empty one before the first
// successful load).
func (s *FSStore) Inventory() *Inventory {
	if inv := s.cur.Load(); inv != nil {
		return inv
	}
	return empty
}

var empty, _ = New(Data{})

// Reload reads the data directory again. On success the new inventory
// replaces the old one atomically; on error the old one stays and the error
// says why.
func (s *FSStore) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inv, err := loadFS(s.FS, &s.cache)
	if err == nil && s.Check != nil {
		err = s.Check(inv)
	}
	if err != nil {
		if s.cur.Load() == nil {
			// The first load: there is no previous inventory to keep; the
			// caller reports the error (labserver exits with it).
			return err
		}
		log.Error("inventory not loaded; still serving the previous one", "err", err)
		return err
	}
	for _, w := range inv.Warnings() {
		log.Warn("inventory", "file", w.File, "warning", w.Msg)
	}
	s.cur.Store(inv)
	log.Info("inventory loaded", "profiles", len(inv.profiles), "groups", len(inv.groups), "templates", len(inv.templates))
	return nil
}
