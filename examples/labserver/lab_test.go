package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalboot/metalboot/internal/hwaddr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildLab resolves c, after mutate, into a lab on the demo inventory.
func buildLab(t *testing.T, c *Config, mutate func(*Config)) *lab {
	t.Helper()
	if mutate != nil {
		mutate(c)
	}
	s, err := c.resolve()
	require.NoError(t, err)
	l, err := newLab(s, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return l
}

// testLab starts the demo lab's HTTP side on an httptest server.
func testLab(t *testing.T, mutate func(*Config)) (*lab, *httptest.Server) {
	t.Helper()
	empty := ""
	l := buildLab(t, &Config{TFTP: &empty, DNS: &empty}, mutate)
	srv := httptest.NewServer(harden(l.routes()))
	t.Cleanup(srv.Close)
	return l, srv
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func grubCheck(t *testing.T, cfg string) {
	t.Helper()
	bin, err := exec.LookPath("grub-script-check")
	if err != nil {
		t.Log("grub-script-check not installed (Debian grub-common): syntax not checked")
		return
	}
	cmd := exec.Command(bin)
	cmd.Stdin = strings.NewReader(cfg)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "grub-script-check: %s\n%s", out, cfg)
}

func TestDemoGrubAndIgnition(t *testing.T) {
	_, srv := testLab(t, nil)
	code, body := get(t, srv.URL+"/grub?mac=00:23:32:2f:40:3c")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, "ignition.config.url=http://127.0.0.1:8080/ignition?mac=00:23:32:2f:40:3c", "the base URL machines are told")
	assert.NotContains(t, body, "$net_")
	grubCheck(t, body)

	for _, q := range []string{"mac=;reboot", "mac=zz", "mac=00:23:32:2f:40:3c&mac=00:23:32:2f:40:3c", "os=%00", "mac=" + strings.Repeat("a", 5000)} {
		code, body := get(t, srv.URL+"/grub?"+q)
		assert.True(t, code >= 400 && code < 500, "%s: %d %s", q, code, body)
	}

	code, body = get(t, srv.URL+"/ignition?mac=00:30:48:fb:e2:44")
	require.Equal(t, 200, code, body)
	var cfg struct {
		Ignition struct{ Version string }
		Storage  struct {
			Files []struct {
				Path     string
				Contents struct{ Source string }
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(body), &cfg))
	assert.Equal(t, "3.3.0", cfg.Ignition.Version)
	require.NotEmpty(t, cfg.Storage.Files)
	assert.Equal(t, "/opt/installer", cfg.Storage.Files[0].Path)

	code, _ = get(t, srv.URL+"/ignition?mac=zz")
	assert.Equal(t, 400, code)

	code, body = get(t, srv.URL+"/grub.cfg")
	require.Equal(t, 200, code)
	assert.Contains(t, body, `configfile "/grub?mac=${net_default_mac}"`)
	grubCheck(t, body)
}

func TestInstallOnceAndReinstall(t *testing.T) {
	state := t.TempDir()
	l, srv := testLab(t, func(c *Config) { c.State = state })
	const mac = "00:30:48:fb:e2:44"
	_, body := get(t, srv.URL+"/grub?mac="+mac)
	assert.Contains(t, body, "linux ")

	code, body := get(t, srv.URL+"/ignition?mac="+mac+"&os=installed")
	require.Equal(t, 200, code, body)
	assert.NotContains(t, body, "/opt/installer")
	assert.True(t, l.state.isInstalled(mustMAC(mac)))

	code, body = get(t, srv.URL+"/grub?mac="+mac)
	require.Equal(t, 200, code)
	assert.NotContains(t, body, "linux ", "an installed machine boots its disk")
	grubCheck(t, body)

	// The state survives a restart.
	again, err := openInstallState(state)
	require.NoError(t, err)
	assert.True(t, again.isInstalled(mustMAC(mac)))

	resp, err := http.Post(srv.URL+"/machines/"+strings.ToUpper(mac)+"/reinstall", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	_, body = get(t, srv.URL+"/grub?mac="+mac)
	assert.Contains(t, body, "linux ", "reinstall requested: the installer boots again")

	resp, err = http.Post(srv.URL+"/machines/nonsense/reinstall", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)

	code, body = get(t, srv.URL+"/machines?format=json")
	require.Equal(t, 200, code)
	var ms []machineRecord
	require.NoError(t, json.Unmarshal([]byte(body), &ms))
	var stages []string
	for _, m := range ms {
		if m.MAC == mac {
			for _, e := range m.Events {
				stages = append(stages, e.Stage)
			}
		}
	}
	assert.Equal(t, []string{stageGrub, stageInstalled, stageLocalBoot, "reinstall-requested", stageGrub}, stages)
	code, body = get(t, srv.URL+"/machines")
	require.Equal(t, 200, code)
	assert.Contains(t, body, "<code>"+mac+"</code>")
}

func TestReinstallOnlyFromAdminNetworks(t *testing.T) {
	_, srv := testLab(t, func(c *Config) { c.AdminAllow = []string{"10.0.0.0/8"} })
	resp, err := http.Post(srv.URL+"/machines/00:30:48:fb:e2:44/reinstall", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 403, resp.StatusCode)
}

func TestAssetsStayInRoot(t *testing.T) {
	dir := t.TempDir()
	assets := filepath.Join(dir, "assets")
	require.NoError(t, os.MkdirAll(filepath.Join(assets, "k"), 0o755))
	kernel := bytes.Repeat([]byte("K"), 100000)
	require.NoError(t, os.WriteFile(filepath.Join(assets, "k", "vmlinuz"), kernel, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(dir, "secret"), filepath.Join(assets, "escape")))
	_, srv := testLab(t, func(c *Config) { c.Assets = assets })

	code, body := get(t, srv.URL+"/assets/k/vmlinuz")
	require.Equal(t, 200, code)
	assert.Equal(t, len(kernel), len(body))

	req, _ := http.NewRequest("GET", srv.URL+"/assets/k/vmlinuz", nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 206, resp.StatusCode)
	assert.Equal(t, "KKKKKKKKKK", string(b))

	for _, p := range []string{"/assets/escape", "/assets/../secret", "/assets/%2e%2e/secret", "/assets/k/%00", "/assets/k/vmlinuz%00.txt", "/assets//etc/passwd", "/assets/" + url.PathEscape("../../secret")} {
		req, _ := http.NewRequest("GET", srv.URL+p, nil)
		req.URL.Opaque = p // send the path exactly as written
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.True(t, resp.StatusCode >= 400 && resp.StatusCode < 500, "%s: %d", p, resp.StatusCode)
		assert.NotContains(t, string(b), "secret", p)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	_, srv := testLab(t, nil)
	get(t, srv.URL+"/grub?mac=00:23:32:2f:40:3c")
	get(t, srv.URL+"/grub?mac=zz")
	code, body := get(t, srv.URL+"/metrics")
	require.Equal(t, 200, code)
	assert.Contains(t, body, `metalboot_http_requests_total{code="200",handler="grub"} 1`)
	assert.Contains(t, body, `metalboot_http_requests_total{code="400",handler="grub"} 1`)
	assert.Contains(t, body, `metalboot_boot_stage_events_total{stage="grub"} 1`)
	code, body = get(t, srv.URL+"/healthz")
	assert.Equal(t, 200, code)
	assert.Equal(t, "ok\n", body)
}

func mustMAC(s string) hwaddr.MAC { return hwaddr.MustParse(s) }
