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
	for _, e := range files {
		file := e.path
		var p Profile
		raw, err := decodeFile(fsys, e, &p)
		if err != nil {
			fail(file, err)
			continue
		}
		key := strings.TrimSuffix(path.Base(file), ".json")
		if p.ID != "" && p.ID != key {
			warns = append(warns, Warning{File: file, Msg: fmt.Sprintf("id %q differs from the file name; the profile is known as %q (matchbox behaviour)", p.ID, key)})
		}
		warns = append(warns, unknownFields(file, raw, &Profile{})...)
		p.ID, p.Source = key, file
		d.Profiles = append(d.Profiles, p)
	}
	files, err = listJSON(fsys, "groups")
	if err != nil {
		return nil, err
	}
	for _, e := range files {
		file := e.path
		var g Group
		raw, err := decodeFile(fsys, e, &g)
		if err != nil {
			fail(file, err)
			continue
		}
		key := strings.TrimSuffix(path.Base(file), ".json")
		if g.ID == "" {
			g.ID = key
		} else if g.ID != key {
			warns = append(warns, Warning{File: file, Msg: fmt.Sprintf("id %q differs from the file name %q", g.ID, key)})
		}
		warns = append(warns, unknownFields(file, raw, &Group{})...)
		g.Source = file
		d.Groups = append(d.Groups, g)
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
func readFile(fsys fs.FS, f dirFile) ([]byte, error) {
	var info fs.FileInfo
	var err error
	if f.entry.Type()&fs.ModeSymlink != 0 {
		info, err = fs.Stat(fsys, f.path) // follows the link
	} else {
		info, err = f.entry.Info()
	}
	if err != nil {
		return nil, err
	}
	if err := regularAndSmall(info); err != nil {
		return nil, err
	}
	file, err := fsys.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if info, err := file.Stat(); err == nil {
		if err := regularAndSmall(info); err != nil {
			return nil, err
		}
	}
	b, err := io.ReadAll(io.LimitReader(file, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("larger than %d bytes (it grew while being read)", maxFile)
	}
	return b, nil
}

func regularAndSmall(info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fileType(info.Mode()))
	}
	if info.Size() > maxFile {
		return fmt.Errorf("larger than %d bytes (%d bytes)", maxFile, info.Size())
	}
	return nil
}

func fileType(m fs.FileMode) string {
	switch t := m.Type(); {
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeDevice != 0:
		return "a device"
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	default:
		return "mode " + m.String()
	}
}

func decodeFile(fsys fs.FS, f dirFile, v any) ([]byte, error) {
	b, err := readFile(fsys, f)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return nil, jsonError(b, err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	return b, nil
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

// unknownFields warns about keys the loader ignores (likely typos).
func unknownFields(file string, raw []byte, v any) []Warning {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && strings.Contains(err.Error(), "unknown field") {
		return []Warning{{File: file, Msg: "ignored: " + strings.TrimPrefix(err.Error(), "json: ")}}
	}
	return nil
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
		b, err := readFile(fsys, dirFile{path: p, entry: e})
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

	mu  sync.Mutex // serialises reloads
	cur atomic.Pointer[Inventory]
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
	inv, err := LoadFS(s.FS)
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
