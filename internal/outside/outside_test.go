// Package outside proves, from a module of a user's own, that metalboot is
// a library: its test builds internal/outside/testdata/mylab in a temporary
// directory outside the repository, with a replace directive to this
// checkout, and runs it. mylab implements every seam (lease store,
// reservations, facts, Ignition guard, inventory store, DNS records) with
// its own types and serves them through the real servers; an internal type
// in an exported API, or an interface outside code cannot implement, fails
// the build.
package outside

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOutsideModule(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	require.NoError(t, err)

	// The user's module: metalboot's requirements (so no network is
	// needed: everything is in the module cache), metalboot itself
	// replaced by this checkout.
	_, reqs, ok := strings.Cut(string(mod), "\nrequire")
	require.True(t, ok, "go.mod has no require block")
	dir := t.TempDir()
	gomod := "module example.com/mylab\n\ngo 1.26.0\n\nrequire github.com/metalboot/metalboot v0.0.0-00010101000000-000000000000\n\nrequire" + reqs +
		"\nreplace github.com/metalboot/metalboot => " + root + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644))
	src, err := filepath.Glob("testdata/mylab/*.go")
	require.NoError(t, err)
	require.NotEmpty(t, src)
	for _, f := range src {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644))
	}
	require.False(t, strings.HasPrefix(dir, root+string(filepath.Separator)), "the module must live outside the repository")

	run := func(args ...string) string {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	run("vet", ".")
	for _, goos := range []string{"darwin", "windows"} {
		cmd := exec.Command(goBin, "build", "-o", os.DevNull, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOOS="+goos)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "GOOS=%s go build:\n%s", goos, out)
	}
	out := run("run", ".")
	for _, want := range []string{"ok dhcp", "ok /grub", "ok /ignition", "ok tftp", "ok dns", "ok all"} {
		assert.Contains(t, out, want)
	}
	t.Log(out)
}
