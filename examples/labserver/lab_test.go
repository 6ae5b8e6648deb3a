package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
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

	for _, q := range []string{"", "mac=", "os=installed", "mac=00:23:32:2f:40:3c%0A", "mac=%2000:23:32:2f:40:3c", "mac=;reboot", "mac=zz", "mac=00:23:32:2f:40:3c&mac=00:23:32:2f:40:3c", "os=%00", "mac=" + strings.Repeat("a", 5000)} {
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
	assert.Contains(t, body, `configfile "/grub?mac=${net_default_mac}&arch=${grub_cpu}"`)
	grubCheck(t, body)
}

// post sends a state-changing request the way labserver -reinstall and
// the installed system's callback do: POST with the action header.
func post(t *testing.T, u, action string, header map[string]string) (int, string) {
	t.Helper()
	return postFrom(t, http.DefaultClient, u, action, header)
}

func postFrom(t *testing.T, c *http.Client, u, action string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, nil)
	require.NoError(t, err)
	if action != "" {
		req.Header.Set(actionHeader, action)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestInstallOnceAndReinstall(t *testing.T) {
	state := t.TempDir()
	l, srv := testLab(t, func(c *Config) { c.State = state })
	const mac = "00:30:48:fb:e2:44"
	_, body := get(t, srv.URL+"/grub?mac="+mac)
	assert.Contains(t, body, "linux ")

	// The installer fetching the installed config is not evidence that
	// the install finished: a timeline stage, no state change.
	code, body := get(t, srv.URL+"/ignition?mac="+mac+"&os=installed")
	require.Equal(t, 200, code, body)
	assert.NotContains(t, body, "/opt/installer")
	assert.Contains(t, body, "/machines/"+mac+"/installed", "the installed system reports its first boot")
	assert.False(t, l.state.isInstalled(mustMAC(mac)))

	code, body = post(t, srv.URL+"/machines/"+mac+"/installed", "installed", nil)
	require.Equal(t, 200, code, body)
	assert.True(t, l.state.isInstalled(mustMAC(mac)))

	code, body = get(t, srv.URL+"/grub?mac="+mac)
	require.Equal(t, 200, code)
	assert.NotContains(t, body, "linux ", "an installed machine boots its disk")
	grubCheck(t, body)

	// The state survives a restart, and /grub and /machines agree on it.
	again, err := openInstallState(state, false, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.True(t, again.isInstalled(mustMAC(mac)))
	_, srv2 := testLab(t, func(c *Config) { c.State = state })
	_, body = get(t, srv2.URL+"/grub?mac="+mac)
	assert.NotContains(t, body, "linux ", "after a restart")
	_, body = get(t, srv2.URL+"/machines?format=json")
	var recs []machineRecord
	require.NoError(t, json.Unmarshal([]byte(body), &recs))
	require.Len(t, recs, 1)
	assert.True(t, recs[0].Installed, "/machines after a restart says what /grub does")

	code, body = post(t, srv.URL+"/machines/"+strings.ToUpper(mac)+"/reinstall", "reinstall", nil)
	require.Equal(t, 200, code, body)
	_, body = get(t, srv.URL+"/grub?mac="+mac)
	assert.Contains(t, body, "linux ", "reinstall requested: the installer boots again")

	code, _ = post(t, srv.URL+"/machines/nonsense/reinstall", "reinstall", nil)
	assert.Equal(t, 400, code)

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
	assert.Equal(t, []string{stageGrub, stageInstalling, stageInstalled, stageLocalBoot, stageReinstall, stageGrub}, stages)
	code, body = get(t, srv.URL+"/machines")
	require.Equal(t, 200, code)
	assert.Contains(t, body, "<code>"+mac+"</code>")
}

// TestStateChangesCannotBeForged reproduces issue #14's attacks on install
// state: a forged installed-config fetch, a cross-origin form post from an
// admin's browser, a request without the action header, and a machine
// subnet client that is not an admin.
func TestStateChangesCannotBeForged(t *testing.T) {
	const mac = "00:30:48:fb:e2:44"
	l, srv := testLab(t, nil)
	base := srv.URL + "/machines/" + mac

	// Anyone can fetch the installed config; that marks nothing.
	code, _ := get(t, srv.URL+"/ignition?mac="+mac+"&os=installed")
	require.Equal(t, 200, code)
	assert.False(t, l.state.isInstalled(mustMAC(mac)), "GET /ignition?os=installed marked the machine installed")

	// CSRF: a page on another origin posts a simple form (text/plain, no
	// custom header): refused even from an admin address.
	resp, err := http.Post(base+"/installed", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 403, resp.StatusCode, "a simple request without the action header")
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "http://evil.example"},
	} {
		code, body := post(t, base+"/reinstall", "reinstall", h)
		assert.Equal(t, 403, code, "%v: %s", h, body)
	}
	code, body := post(t, base+"/installed", "reinstall", nil)
	assert.Equal(t, 403, code, "header naming another action: %s", body)
	assert.False(t, l.state.isInstalled(mustMAC(mac)))

	// Same origin (what a page served by labserver itself sends) passes.
	code, body = post(t, base+"/installed", "installed", map[string]string{"Sec-Fetch-Site": "same-origin"})
	assert.Equal(t, 200, code, body)
	assert.True(t, l.state.isInstalled(mustMAC(mac)))

	code, _ = post(t, base+"/bogus", "bogus", nil)
	assert.Equal(t, 404, code)
}

// leaseLab is the demo lab with ignition_clients "leased", admin_allow
// 127.0.0.1 only and a DHCP server (not listening: its lease store is what
// matters) that has leased 127.0.0.2 to mac. Clients from 127.0.0.2 are
// the lease holder; clients from 127.0.0.3 are any other machine.
func leaseLab(t *testing.T, mac string) (*lab, *httptest.Server) {
	t.Helper()
	empty := ""
	l := buildLab(t, &Config{TFTP: &empty, DNS: &empty, AdminAllow: []string{"127.0.0.1/32"},
		DHCP: &DHCP{Interface: "lo", ServerIP: "127.0.0.1", Subnet: "127.0.0.0/8", Range: []string{"127.0.0.100", "127.0.0.200"}}}, nil)
	require.True(t, l.s.IgnitionLeased, "ignition_clients defaults to leased with DHCP")
	store := dhcpsrv.NewMemoryStore()
	_, err := store.CompareAndSwap(context.Background(), 0, dhcpsrv.Lease{IP: netip.MustParseAddr("127.0.0.2"), MAC: mustMAC(mac),
		State: dhcpsrv.StateBound, Expires: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	l.dhcp.Store(&dhcpsrv.Server{Leases: store})
	srv := httptest.NewServer(harden(l.routes()))
	t.Cleanup(srv.Close)
	return l, srv
}

// clientFrom returns an HTTP client whose connections come from src (any
// 127/8 address is this host's on Linux).
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func TestIgnitionOnlyToLeaseHolder(t *testing.T) {
	const mac = "00:30:48:fb:e2:44"
	_, srv := leaseLab(t, mac)
	u := srv.URL + "/ignition?mac=" + mac
	for _, c := range []struct {
		from string
		want int
	}{{"127.0.0.2", 200}, {"127.0.0.3", 403}, {"127.0.0.1", 200}} {
		resp, err := clientFrom(c.from).Get(u)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, c.want, resp.StatusCode, "from %s: %s", c.from, b)
		if c.want == 403 {
			assert.NotContains(t, string(b), "ssh-ed25519", "a refused client sees no key")
		}
	}
	// A MAC nobody leased: only admins.
	resp, err := clientFrom("127.0.0.2").Get(srv.URL + "/ignition?mac=00:23:32:2f:40:3c")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 403, resp.StatusCode)
}

func TestInstalledOnlyFromLeaseHolderOrAdmin(t *testing.T) {
	const mac = "00:30:48:fb:e2:44"
	l, srv := leaseLab(t, mac)
	u := srv.URL + "/machines/" + mac + "/installed"
	code, body := postFrom(t, clientFrom("127.0.0.3"), u, "installed", nil)
	assert.Equal(t, 403, code, body)
	assert.False(t, l.state.isInstalled(mustMAC(mac)), "another machine marked it installed")
	code, body = postFrom(t, clientFrom("127.0.0.2"), srv.URL+"/machines/00:23:32:2f:40:3c/installed", "installed", nil)
	assert.Equal(t, 403, code, "the lease holder of one MAC marked another: %s", body)
	code, body = postFrom(t, clientFrom("127.0.0.2"), srv.URL+"/machines/"+mac+"/reinstall", "reinstall", nil)
	assert.Equal(t, 403, code, "a machine asked for a reinstall: %s", body)

	code, body = postFrom(t, clientFrom("127.0.0.2"), u, "installed", nil)
	assert.Equal(t, 200, code, body)
	assert.True(t, l.state.isInstalled(mustMAC(mac)))
}

func TestReinstallOnlyFromAdminNetworks(t *testing.T) {
	_, srv := testLab(t, func(c *Config) { c.AdminAllow = []string{"10.0.0.0/8"} })
	u := srv.URL + "/machines/00:30:48:fb:e2:44/reinstall"
	code, body := postFrom(t, clientFrom("127.0.0.2"), u, "reinstall", nil)
	assert.Equal(t, 403, code, "another host, not in admin_allow: %s", body)
	// The server host itself (source address = the address it reached, as
	// labserver -reinstall on the server) is an admin.
	code, body = postFrom(t, clientFrom("127.0.0.1"), u, "reinstall", nil)
	assert.Equal(t, 200, code, "the server host itself: %s", body)
}

// TestCorruptInstallState: a state file that does not read back stops the
// start with the file and offset and is left untouched; only
// -discard-corrupt-state moves it aside.
func TestCorruptInstallState(t *testing.T) {
	good := `{"00:30:48:fb:e2:44": "2026-12-01T10:00:00Z", "00:23:32:2f:40:3c": "2026-12-01T11:00:00Z"}`
	flipped := []byte(good)
	flipped[40] ^= 0x40
	for name, content := range map[string][]byte{
		"zeros":   make([]byte, 4096),
		"garbage": []byte("\x8f\x01garbage without a newline"),
		"flipped": flipped,
		"empty":   {},
		"badmac":  []byte(`{"00:30:48:fb:e2": "2026-12-01T10:00:00Z"}`),
		"trailer": []byte(good + `x`),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "installed.json")
			require.NoError(t, os.WriteFile(file, content, 0o640))
			_, err := openInstallState(dir, false, slog.New(slog.DiscardHandler))
			require.Error(t, err)
			assert.ErrorIs(t, err, errCorruptState)
			assert.Contains(t, err.Error(), file)
			assert.Contains(t, err.Error(), "at byte")
			after, rerr := os.ReadFile(file)
			require.NoError(t, rerr)
			assert.Equal(t, content, after, "the file was changed")

			var logs bytes.Buffer
			s, err := openInstallState(dir, true, slog.New(slog.NewTextHandler(&logs, nil)))
			require.NoError(t, err)
			assert.False(t, s.isInstalled(mustMAC("00:30:48:fb:e2:44")))
			assert.Contains(t, logs.String(), "MOVED ASIDE")
			aside, _ := filepath.Glob(file + ".corrupt-*")
			require.Len(t, aside, 1)
			kept, _ := os.ReadFile(aside[0])
			assert.Equal(t, content, kept, "the evidence is kept")
		})
	}
}

func TestAssetsStayInRoot(t *testing.T) {
	dir := t.TempDir()
	assets := filepath.Join(dir, "assets")
	require.NoError(t, os.MkdirAll(filepath.Join(assets, "k"), 0o755))
	kernel := bytes.Repeat([]byte("K"), 100000)
	require.NoError(t, os.WriteFile(filepath.Join(assets, "k", "vmlinuz"), kernel, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644))
	// The operator's own link to an image directory elsewhere is followed
	// (matchbox users do this); a link someone else owns is not.
	images := filepath.Join(dir, "images")
	require.NoError(t, os.MkdirAll(images, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(images, "initrd.img"), []byte("initrd"), 0o644))
	require.NoError(t, os.Symlink(images, filepath.Join(assets, "flatcar")))
	foreign := false
	if os.Geteuid() == 0 {
		require.NoError(t, os.Symlink(filepath.Join(dir, "secret"), filepath.Join(assets, "escape")))
		require.NoError(t, os.Lchown(filepath.Join(assets, "escape"), 65534, 65534))
		foreign = true
	}
	var logs syncBuffer
	l := buildLab(t, &Config{TFTP: new(string), DNS: new(string), Assets: assets}, nil)
	l.log = slog.New(slog.NewTextHandler(&logs, nil))
	srv := httptest.NewServer(harden(l.routes()))
	t.Cleanup(srv.Close)

	code, body := get(t, srv.URL+"/assets/flatcar/initrd.img")
	require.Equal(t, 200, code, "the operator's symlink is followed: %s", body)
	assert.Equal(t, "initrd", body)
	if foreign {
		code, _ = get(t, srv.URL+"/assets/escape")
		assert.Equal(t, 403, code, "a symlink owned by another user")
		assert.Contains(t, logs.String(), "owned by uid 65534", "the refusal is logged with its reason")
	}

	code, body = get(t, srv.URL+"/assets/k/vmlinuz")
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

// TestServedTreesServeFilesOnly: no directory listings under /assets/ and
// /grub/, and a FIFO is refused without being opened (opening it would
// block a thread per request until a writer comes).
func TestServedTreesServeFilesOnly(t *testing.T) {
	dir := t.TempDir()
	assets, tftp := filepath.Join(dir, "assets"), filepath.Join(dir, "tftp")
	for _, d := range []string{filepath.Join(assets, "k"), filepath.Join(tftp, "grub", "x86_64-efi")} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(assets, "k", "vmlinuz"), []byte("kernel"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tftp, "grub", "x86_64-efi", "core.efi"), []byte("grub"), 0o644))
	require.NoError(t, syscall.Mkfifo(filepath.Join(assets, "k", "fifo"), 0o644))
	require.NoError(t, syscall.Mkfifo(filepath.Join(tftp, "grub", "fifo"), 0o644))
	var logs syncBuffer
	empty := ""
	c := &Config{TFTP: &empty, DNS: &empty, Assets: assets, TFTPRoot: tftp}
	s, err := c.resolve()
	require.NoError(t, err)
	l, err := newLab(s, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	srv := httptest.NewServer(harden(l.routes()))
	t.Cleanup(srv.Close)
	client := &http.Client{Timeout: 20 * time.Second} // a blocked open would hang here, not pass

	for p, want := range map[string]int{
		"/assets/k/vmlinuz": 200, "/grub/x86_64-efi/core.efi": 200,
		"/assets/": 404, "/assets/k/": 404, "/assets/k": 404, "/grub/": 404, "/grub/x86_64-efi/": 404,
		"/assets/k/fifo": 403, "/grub/fifo": 403,
	} {
		resp, err := client.Get(srv.URL + p)
		require.NoError(t, err, p)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, "%s: %s", p, b)
		assert.NotContains(t, string(b), "vmlinuz", "%s lists a directory", p)
		assert.NotContains(t, string(b), "core.efi", "%s lists a directory", p)
	}
	assert.Contains(t, logs.String(), "not a regular file", "a refusal is logged with its reason")
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

// TestInventoryCheckedAgainstDHCP: a group's ip outside the DHCP subnet is
// a warning that says what will happen, and a reservation's name resolves
// before the machine takes its lease.
func TestInventoryCheckedAgainstDHCP(t *testing.T) {
	var logs syncBuffer
	empty := ""
	c := &Config{TFTP: &empty, DNS: &empty, DHCP: &DHCP{Interface: "br0", ServerIP: "10.99.0.1", Subnet: "10.99.0.0/24",
		Range:        []string{"10.99.0.100", "10.99.0.200"},
		Reservations: []Reservation{{MAC: "52:54:00:00:00:10", IP: "10.99.0.10", Hostname: "switch1"}}}}
	s, err := c.resolve()
	require.NoError(t, err)
	l, err := newLab(s, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	// The demo's machines have 172.22.10.50 and .54: outside 10.99.0.0/24.
	for _, want := range []string{"ip 172.22.10.50 of 00:23:32:2f:40:3c is outside dhcp.subnet 10.99.0.0/24",
		"ip 172.22.10.54 of 00:30:48:fb:e2:44 is outside dhcp.subnet"} {
		assert.Contains(t, logs.String(), want)
	}
	addrs, err := l.dnsStatic.LookupHost(context.Background(), "switch1.lab.")
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.99.0.10")}, addrs)
}

// TestCorruptLeaseJournal: labserver refuses to start on a corrupt lease
// journal, says how to get past it and leaves the file as it is;
// -discard-corrupt-state moves it aside. (DHCP then fails to bind on an
// interface that does not exist: nothing listens on port 67 here.)
func TestCorruptLeaseJournal(t *testing.T) {
	state := t.TempDir()
	journal := dhcpsrv.JournalPath(state)
	garbage := []byte("0badc0de {\"op\":\"put\",\"ip\":\"10.99.0.100\"}\nnot a record\n")
	require.NoError(t, os.WriteFile(journal, garbage, 0o640))
	empty := ""
	for _, discard := range []bool{false, true} {
		c := &Config{TFTP: &empty, DNS: &empty, HTTP: func() *string { s := "127.0.0.1:0"; return &s }(), State: state,
			DHCP: &DHCP{Interface: "mb-absent0", ServerIP: "10.99.0.1", Subnet: "10.99.0.0/24", Range: []string{"10.99.0.100", "10.99.0.200"}}}
		s, err := c.resolve()
		require.NoError(t, err)
		s.DiscardCorruptState = discard
		var logs syncBuffer
		l, err := newLab(s, slog.New(slog.NewTextHandler(&logs, nil)))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		err = l.start(ctx)
		cancel()
		_ = l.wait(ctx)
		require.Error(t, err)
		if !discard {
			assert.ErrorIs(t, err, dhcpsrv.ErrCorrupt)
			assert.Contains(t, err.Error(), journal)
			assert.Contains(t, err.Error(), "-discard-corrupt-state")
			b, rerr := os.ReadFile(journal)
			require.NoError(t, rerr)
			assert.Equal(t, garbage, b, "the journal was changed")
			continue
		}
		assert.NotErrorIs(t, err, dhcpsrv.ErrCorrupt, "moved aside, the start goes on (to the bind error)")
		assert.Contains(t, logs.String(), "MOVED ASIDE")
		aside, _ := filepath.Glob(journal + ".corrupt-*")
		require.Len(t, aside, 1)
		b, _ := os.ReadFile(aside[0])
		assert.Equal(t, garbage, b, "the evidence is kept")
	}
}

// TestReservationsFollowReload: DHCP reservations come from the current
// inventory, so a SIGHUP reload reaches DHCP at once (they were copied once
// at start); dhcp.reservations in the config win over the inventory.
func TestReservationsFollowReload(t *testing.T) {
	data := t.TempDir()
	write := func(ip string) {
		for name, body := range map[string]string{
			"profiles/p.json": `{"id": "p", "boot": {"kernel": "/k"}}`,
			"groups/n.json":   `{"id": "n", "profile": "p", "selector": {"mac": "52:54:00:00:00:01"}, "metadata": {"hostname": "n1", "ip": "` + ip + `"}}`,
		} {
			require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(data, name)), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(data, name), []byte(body), 0o644))
		}
	}
	write("10.99.0.10")
	empty := ""
	l := buildLab(t, &Config{TFTP: &empty, DNS: &empty, Data: data, DHCP: &DHCP{Interface: "br0", ServerIP: "10.99.0.1",
		Subnet: "10.99.0.0/24", Range: []string{"10.99.0.100", "10.99.0.200"},
		Reservations: []Reservation{{MAC: "52:54:00:00:00:02", IP: "10.99.0.20", Hostname: "sw"}}}}, nil)
	r := labReservations{l}
	ctx := context.Background()
	res, ok, err := r.Reservation(ctx, mustMAC("52:54:00:00:00:01"))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "10.99.0.10", res.IP.String())
	assert.Equal(t, "n1", res.Hostname)

	write("10.99.0.11")
	require.NoError(t, l.store.Reload())
	res, ok, _ = r.Reservation(ctx, mustMAC("52:54:00:00:00:01"))
	require.True(t, ok)
	assert.Equal(t, "10.99.0.11", res.IP.String(), "the reload reached DHCP")
	mac, ok, _ := r.ReservedFor(ctx, netip.MustParseAddr("10.99.0.11"))
	assert.True(t, ok)
	assert.Equal(t, "52:54:00:00:00:01", mac.String())
	_, ok, _ = r.ReservedFor(ctx, netip.MustParseAddr("10.99.0.10"))
	assert.False(t, ok, "the old address is free again")

	res, ok, _ = r.Reservation(ctx, mustMAC("52:54:00:00:00:02"))
	require.True(t, ok)
	assert.Equal(t, "10.99.0.20", res.IP.String(), "config reservation")

	write("172.16.0.1") // outside the DHCP subnet: not a reservation
	require.NoError(t, l.store.Reload())
	_, ok, _ = r.Reservation(ctx, mustMAC("52:54:00:00:00:01"))
	assert.False(t, ok)
}
