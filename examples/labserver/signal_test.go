package main

import (
	"bufio"
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/profile/demo"
)

// syncBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// buildLabserver compiles the binary once per test run.
func buildLabserver(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "labserver")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// TestSIGHUPReload runs the real binary on a copy of the demo data
// directory: a broken directory on SIGHUP is rejected and the old
// inventory keeps serving; a fixed one is loaded; SIGTERM exits cleanly.
func TestSIGHUPReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	data := t.TempDir()
	require.NoError(t, os.CopyFS(data, demo.FS()))
	bin := buildLabserver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-http", "127.0.0.1:0", "-tftp", "", "-dns", "", "-data", data, "-base-url", "http://deploy.lab:8080")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var logs syncBuffer
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	addrRe := regexp.MustCompile(`HTTP  http://(127\.0\.0\.1:\d+)`)
	sc := bufio.NewScanner(stdout)
	var base string
	for sc.Scan() {
		if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
			base = "http://" + m[1]
			break
		}
	}
	require.NotEmpty(t, base, "banner with the HTTP address; log:\n%s", logs.String())
	go func() {
		for sc.Scan() {
		}
	}()

	code, body := get(t, base+"/grub?mac=00:23:32:2f:40:3c")
	require.Equal(t, 200, code, body)
	require.Contains(t, body, "Flatcar installer")

	// Break the data directory: a group naming a profile that does not exist.
	bad := filepath.Join(data, "groups", "broken.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"id":"broken","profile":"nope","selector":{"mac":"02:00:00:00:00:01"}}`), 0o644))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return bytes.Contains([]byte(logs.String()), []byte("inventory rejected")) }, 10*time.Second, 50*time.Millisecond, "log:\n%s", logs.String())
	assert.Contains(t, logs.String(), `unknown profile \"nope\"`)
	code, body = get(t, base+"/grub?mac=00:23:32:2f:40:3c")
	assert.Equal(t, 200, code, "the old inventory keeps serving")
	assert.Contains(t, body, "Flatcar installer")

	// Fix it with a visible change: the profile gets a new name.
	require.NoError(t, os.Remove(bad))
	p := filepath.Join(data, "profiles", "install.json")
	b, err := fs.ReadFile(os.DirFS(data), "profiles/install.json")
	require.NoError(t, err)
	b = bytes.Replace(b, []byte("Flatcar installer: boots"), []byte("Reloaded installer: boots"), 1)
	require.NoError(t, os.WriteFile(p, b, 0o644))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		_, body := get(t, base+"/grub?mac=00:23:32:2f:40:3c")
		return bytes.Contains([]byte(body), []byte("Reloaded installer"))
	}, 10*time.Second, 50*time.Millisecond)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	err = cmd.Wait()
	assert.NoError(t, err, "SIGTERM: clean exit; log:\n%s", logs.String())
	assert.Contains(t, logs.String(), "shut down")
}
