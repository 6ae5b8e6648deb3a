package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/metalboot/metalboot/internal/hwaddr"
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

func openInstallState(dir string) (*installState, error) {
	s := &installState{installed: map[hwaddr.MAC]time.Time{}}
	if dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	s.file = filepath.Join(dir, "installed.json")
	b, err := os.ReadFile(s.file)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]time.Time
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", s.file, err)
	}
	for k, v := range m {
		mac, err := hwaddr.Parse(k)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.file, err)
		}
		s.installed[mac] = v
	}
	return s, nil
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
