package ignition

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vincent-petithory/dataurl"
)

// config is the part of an Ignition config the tests look at; it reads
// every 3.x version.
type config struct {
	Ignition struct {
		Version string `json:"version"`
	} `json:"ignition"`
	Storage struct {
		Files []struct {
			Path     string `json:"path"`
			Mode     *int   `json:"mode"`
			Contents struct {
				Source      *string `json:"source"`
				Compression *string `json:"compression"`
			} `json:"contents"`
		} `json:"files"`
	} `json:"storage"`
	Passwd struct {
		Users []struct {
			Name   string   `json:"name"`
			Keys   []string `json:"sshAuthorizedKeys"`
			Groups []string `json:"groups"`
		} `json:"users"`
	} `json:"passwd"`
	Systemd struct {
		Units []struct {
			Name     string  `json:"name"`
			Enabled  *bool   `json:"enabled"`
			Contents *string `json:"contents"`
		} `json:"units"`
	} `json:"systemd"`
}

func decodeConfig(t testing.TB, raw []byte) config {
	t.Helper()
	var c config
	require.NoError(t, json.Unmarshal(raw, &c), "served config is not JSON: %s", raw)
	return c
}

// file returns the decoded contents and mode of path; ok is false when the
// config does not write it.
func (c config) file(t testing.TB, path string) (string, int, bool) {
	t.Helper()
	for _, f := range c.Storage.Files {
		if f.Path != path {
			continue
		}
		require.NotNil(t, f.Contents.Source, "%s without contents", path)
		du, err := dataurl.DecodeString(*f.Contents.Source)
		require.NoError(t, err, "%s: not a data URL", path)
		data := du.Data
		if f.Contents.Compression != nil && *f.Contents.Compression == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			require.NoError(t, err)
			data, err = io.ReadAll(zr)
			require.NoError(t, err)
		}
		mode := -1
		if f.Mode != nil {
			mode = *f.Mode
		}
		return string(data), mode, true
	}
	return "", 0, false
}

func (c config) users() []string {
	var out []string
	for _, u := range c.Passwd.Users {
		out = append(out, u.Name)
	}
	return out
}

func (c config) unit(name string) (string, bool, bool) {
	for _, u := range c.Systemd.Units {
		if u.Name == name {
			s := ""
			if u.Contents != nil {
				s = *u.Contents
			}
			return s, u.Enabled != nil && *u.Enabled, true
		}
	}
	return "", false, false
}

// bashSyntax checks a script with bash -n; it skips without bash.
func bashSyntax(t testing.TB, script string) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed: cannot check the installer script")
	}
	cmd := exec.Command(bash, "-n")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "bash -n rejects the script: %s\n%s", out, script)
}

var (
	validatorOnce sync.Once
	validatorPath string
	validatorErr  string
	validatorDir  string
)

// ignitionValidate runs Ignition's own ignition-validate, built from the
// module in go.mod, on raw and returns its output; any output (warnings
// included) or a non-zero exit fails the test.
func ignitionValidate(t testing.TB, raw []byte) {
	t.Helper()
	validatorOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			validatorErr = "go command not found: cannot build ignition-validate"
			return
		}
		dir, err := os.MkdirTemp("", "metalboot-ignition-validate")
		if err != nil {
			validatorErr = err.Error()
			return
		}
		validatorDir = dir
		p := filepath.Join(dir, "ignition-validate")
		cmd := exec.Command(goBin, "build", "-o", p, "github.com/coreos/ignition/v2/validate")
		if out, err := cmd.CombinedOutput(); err != nil {
			validatorErr = "go build github.com/coreos/ignition/v2/validate: " + err.Error() + ": " + string(out)
			return
		}
		validatorPath = p
	})
	if validatorPath == "" {
		if strings.HasPrefix(validatorErr, "go command not found") {
			t.Skip(validatorErr)
		}
		t.Fatal(validatorErr)
	}
	cmd := exec.Command(validatorPath, "-")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "ignition-validate rejects the config: %s\n%s", out, raw)
	require.Empty(t, strings.TrimSpace(string(out)), "ignition-validate warns about the config:\n%s", raw)
}

// metaChecked counts the renders metaCheck compared.
var metaChecked atomic.Int64

func TestMain(m *testing.M) {
	// Every render in every test of this package that puts metadata in as
	// placeholders is compared with the render with the real values: the
	// config must be byte-identical, or both must fail.
	var mismatches []string
	var mu sync.Mutex
	metaCheck = func(t *Template, data map[string]any, out Output, err error) {
		want, _, werr := t.renderMode(data, nil, false)
		bad := ""
		switch {
		case (err == nil) != (werr == nil):
			bad = fmt.Sprintf("error %v, with the real values %v", err, werr)
		case err == nil && !bytes.Equal(out.JSON, want.JSON):
			bad = fmt.Sprintf("config\n%s\nwith the real values\n%s", out.JSON, want.JSON)
		}
		if bad != "" {
			mu.Lock()
			mismatches = append(mismatches, t.Name+": "+bad)
			mu.Unlock()
		}
		metaChecked.Add(1)
	}
	code := m.Run()
	if len(mismatches) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d renders with metadata placeholders differ from the render with the real values:\n%s\n", len(mismatches), strings.Join(mismatches, "\n"))
		code = 1
	}
	if validatorDir != "" {
		_ = os.RemoveAll(validatorDir)
	}
	os.Exit(code)
}

// seedLab is the seed lab's matchbox data directory.
const seedLab = "../../shared/fixtures/seed-lab"
