package grubcfg

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// scriptCheckPath is grub-script-check from Debian's grub-common.
func scriptCheckPath() string {
	p, err := exec.LookPath("grub-script-check")
	if err != nil {
		return ""
	}
	return p
}

func needScriptCheck(t testing.TB) string {
	t.Helper()
	p := scriptCheckPath()
	if p == "" {
		t.Skip("grub-script-check not installed (apt-get install grub-common); GRUB syntax not checked")
	}
	return p
}

// grubCheck runs grub-script-check on script; it returns nil when GRUB
// 2.06's parser accepts it, or an error with the tool's output.
func grubCheck(bin, script string) error {
	cmd := exec.Command(bin)
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return &checkError{err: err, out: out.String()}
	}
	return nil
}

type checkError struct {
	err error
	out string
}

func (e *checkError) Error() string { return "grub-script-check: " + e.err.Error() + ": " + e.out }

// requireGRUBAccepts fails t unless grub-script-check accepts script.
func requireGRUBAccepts(t testing.TB, script string) {
	t.Helper()
	bin := needScriptCheck(t)
	require.NoError(t, grubCheck(bin, script), "script:\n%s", script)
}

// golden compares got with testdata/name.golden (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file: run go test -run %s -update", t.Name())
	require.Equal(t, string(want), string(got), "output differs from %s (go test -update rewrites it)", path)
}
