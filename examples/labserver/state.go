package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/files"
)

// installState remembers which machines have installed, so that their next
// network boot boots the local disk instead of reinstalling (the endless
// install loop matchbox users hit). With a file it survives restarts and
// crashes: every change is written to a temporary file, synced and renamed
// over the old one.
type installState struct {
	mu        sync.Mutex
	file      string // "" keeps the state in memory
	installed map[hwaddr.MAC]time.Time
}

// errCorruptState is wrapped by the error of a state file that cannot be
// read as it was written.
var errCorruptState = errors.New("corrupt state file")

// corruptStateError names the file, the byte offset and the reason. The
// file is left untouched: it is evidence, and the operator decides (see
// -discard-corrupt-state).
type corruptStateError struct {
	file   string
	offset int64
	err    error
}

func (e *corruptStateError) Error() string {
	return fmt.Sprintf("%s: corrupt at byte %d: %v (the file is left as it is: repair it, "+
		"or start once with -discard-corrupt-state to move it aside and start empty)", e.file, e.offset, e.err)
}

func (e *corruptStateError) Unwrap() []error { return []error{errCorruptState, e.err} }

// openInstallState reads dir/installed.json. A file that does not parse
// (zeros, garbage, a flipped byte, an empty file) stops the start with
// the file and offset, unless discard is set: then it is moved aside
// (renamed, never deleted) with a loud log line and the state starts empty.
func openInstallState(dir string, discard bool, log *slog.Logger) (*installState, error) {
	s := &installState{installed: map[hwaddr.MAC]time.Time{}}
	if dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	s.file = filepath.Join(dir, "installed.json")
	err := s.load()
	if errors.Is(err, errCorruptState) && discard {
		aside, merr := files.MoveAside(s.file)
		if merr != nil {
			return nil, fmt.Errorf("%w; moving it aside: %v", err, merr)
		}
		log.Error("CORRUPT STATE FILE MOVED ASIDE: starting with no machine marked installed", "file", s.file, "moved_to", aside, "err", err)
		s.installed = map[hwaddr.MAC]time.Time{}
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *installState) load() error {
	f, err := os.Open(s.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return err
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (%s)", s.file, files.Kind(st.Mode()))
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	var m map[string]time.Time
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		off := dec.InputOffset()
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			off = se.Offset
		case errors.As(err, &te):
			off = te.Offset
		}
		return &corruptStateError{file: s.file, offset: off, err: err}
	}
	if m == nil {
		return &corruptStateError{file: s.file, err: errors.New("null, not an object of MAC: time")}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &corruptStateError{file: s.file, offset: dec.InputOffset(), err: errors.New("data after the object")}
	}
	for k, v := range m {
		mac, err := hwaddr.Parse(k)
		if err != nil {
			return &corruptStateError{file: s.file, offset: int64(bytes.Index(b, []byte(strconv.Quote(k)))), err: err}
		}
		s.installed[mac] = v
	}
	return nil
}

func (s *installState) isInstalled(m hwaddr.MAC) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.installed[m]
	return ok
}

// set marks m installed (true) or due for reinstall (false). It reports
// whether anything changed.
func (s *installState) set(m hwaddr.MAC, installed bool, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, was := s.installed[m]
	if was == installed {
		return false, nil
	}
	if installed {
		s.installed[m] = now
	} else {
		delete(s.installed, m)
	}
	return true, s.saveLocked()
}

func (s *installState) saveLocked() error {
	if s.file == "" {
		return nil
	}
	out := make(map[string]time.Time, len(s.installed))
	for k, v := range s.installed {
		out[k.String()] = v
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.file); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(s.file)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
