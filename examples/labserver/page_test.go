package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// webDriver is the little of the W3C WebDriver protocol the page test
// needs, spoken to Debian's chromedriver driving headless Chromium.
type webDriver struct {
	t       *testing.T
	base    string
	session string
}

const elementKey = "element-6066-11e4-a52e-4f735466cecf"

func (w *webDriver) call(method, path string, body any) any {
	w.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(w.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.base+path, rd)
	require.NoError(w.t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	var out struct{ Value any }
	b, _ := io.ReadAll(resp.Body)
	require.NoError(w.t, json.Unmarshal(b, &out), "%s", b)
	require.Equal(w.t, 200, resp.StatusCode, "%s %s: %s", method, path, b)
	return out.Value
}

func (w *webDriver) s(path string) string { return "/session/" + w.session + path }

// find returns the element ids matching a CSS selector.
func (w *webDriver) find(css string) []string {
	w.t.Helper()
	var ids []string
	for _, e := range w.call("POST", w.s("/elements"), map[string]string{"using": "css selector", "value": css}).([]any) {
		id, ok := e.(map[string]any)[elementKey].(string)
		require.True(w.t, ok, "element reference %v", e)
		ids = append(ids, id)
	}
	return ids
}

// clickCSS finds and clicks the first element matching css, finding it
// again when the page's refresh (every 3 s) replaced it between the two.
func (w *webDriver) clickCSS(css string) {
	w.t.Helper()
	for range 5 {
		ids := w.find(css)
		require.NotEmpty(w.t, ids, "no element %s", css)
		body, _ := json.Marshal(map[string]any{})
		req, err := http.NewRequest("POST", w.base+w.s("/element/"+ids[0]+"/click"), bytes.NewReader(body))
		require.NoError(w.t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(w.t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			return
		}
		if !strings.Contains(string(b), "stale element") {
			w.t.Fatalf("click %s: %s", css, b)
		}
	}
	w.t.Fatalf("click %s: the element went stale five times", css)
}

// js runs a script in the page and returns its result.
func (w *webDriver) js(script string) any {
	return w.call("POST", w.s("/execute/sync"), map[string]any{"script": script, "args": []any{}})
}

// eventually polls cond for up to 20 s (the page refreshes every 3 s).
func (w *webDriver) eventually(what string, cond func() bool) {
	w.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if cond() {
			return
		}
	}
	w.t.Fatalf("the page never showed: %s", what)
}

// startBrowser starts chromedriver on a free loopback port and a headless
// Chromium session; both end with the test.
func startBrowser(t *testing.T) *webDriver {
	t.Helper()
	driver := need(t, "chromedriver", "chromium-driver")
	chromium := need(t, "chromium", "chromium")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port), "--allowed-ips=127.0.0.1")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	w := &webDriver{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	for i := 0; ; i++ {
		if resp, err := http.Get(w.base + "/status"); err == nil {
			resp.Body.Close()
			break
		}
		require.Less(t, i, 100, "chromedriver did not start")
		time.Sleep(100 * time.Millisecond)
	}
	v := w.call("POST", "/session", map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{"binary": chromium,
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"}},
	}}})
	w.session = v.(map[string]any)["sessionId"].(string)
	t.Cleanup(func() { w.call("DELETE", "/session/"+w.session, nil) })
	return w
}

// TestMachinesPageInBrowser drives four machines through the boot (one
// installed, one mid-way, one failing because no group matches, one stuck)
// and checks in a real browser what a person sees on /machines: one row
// each with progress and status, the timeline on demand, sorting, the
// reinstall button, and the page refreshing itself. The screenshot is kept
// in $METALBOOT_ARTIFACTS (default: the system's temporary directory).
func TestMachinesPageInBrowser(t *testing.T) {
	data, state := t.TempDir(), t.TempDir()
	for name, body := range map[string]string{
		"profiles/p.json": `{"id": "p", "boot": {"kernel": "/assets/vmlinuz", "initrd": ["/assets/initrd"], "args": ["m={{.MAC}}"]}, "ignition_id": "i.ign"}`,
		"ignition/i.ign":  `{"ignition": {"version": "3.4.0"}}`,
		"groups/a.json":   `{"id": "a", "profile": "p", "selector": {"mac": "52:54:00:00:00:0a"}, "metadata": {"hostname": "alpha", "ip": "10.99.0.10"}}`,
		"groups/b.json":   `{"id": "b", "profile": "p", "selector": {"mac": "52:54:00:00:00:0b"}, "metadata": {"hostname": "bravo", "ip": "10.99.0.11"}}`,
		"groups/d.json":   `{"id": "d", "profile": "p", "selector": {"mac": "52:54:00:00:00:0d"}, "metadata": {"hostname": "delta", "ip": "10.99.0.13"}}`,
	} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(data, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(data, name), []byte(body), 0o644))
	}
	empty := ""
	l := buildLab(t, &Config{TFTP: &empty, DNS: &empty, Data: data, State: state}, nil)
	l.log = slog.New(slog.DiscardHandler)
	srv := httptest.NewServer(harden(l.routes()))
	t.Cleanup(srv.Close)
	a, b, c, d := hwaddr.MustParse("52:54:00:00:00:0a"), hwaddr.MustParse("52:54:00:00:00:0b"),
		hwaddr.MustParse("52:54:00:00:00:0c"), hwaddr.MustParse("52:54:00:00:00:0d")

	// delta booted 25 minutes ago and was not heard of again.
	real := l.timeline.now
	l.timeline.now = func() time.Time { return real().Add(-25 * time.Minute) }
	l.event(d, netipAddr("10.99.0.13"), stageLease, "10.99.0.13")
	l.event(d, netipAddr("10.99.0.13"), stageTFTP, "grub/x86_64-efi/core.efi")
	l.timeline.now = real

	// alpha goes all the way; bravo reaches GRUB; charlie is unknown.
	for _, m := range []hwaddr.MAC{a, b, c} {
		l.event(m, netip4(m), stageDiscover, "arch efi64")
		l.event(m, netip4(m), stageLease, netip4(m).String())
		l.event(m, netip4(m), stageTFTP, "grub/x86_64-efi/core.efi")
		code, body := get(t, srv.URL+"/grub?mac="+m.String())
		if m == c {
			require.Equal(t, 404, code, body)
		} else {
			require.Equal(t, 200, code, body)
		}
	}
	l.event(a, netip4(a), stageKernel, "/assets/vmlinuz")
	code, body := get(t, srv.URL+"/ignition?mac="+a.String())
	require.Equal(t, 200, code, body)
	code, body = post(t, srv.URL+"/machines/"+a.String()+"/installed", "installed", nil)
	require.Equal(t, 200, code, body)

	w := startBrowser(t)
	w.call("POST", w.s("/url"), map[string]string{"url": srv.URL + "/machines"})
	// Read in one script: the page's refresh may replace the rows between
	// a find and a read.
	innerText := func(css string) string {
		return fmt.Sprint(w.js(`const e = document.querySelector('` + css + `'); return e ? e.innerText.trim() : ''`))
	}
	rowText := func(mac hwaddr.MAC) string { return innerText(`tr[data-mac="` + mac.String() + `"] td.status`) }
	require.Len(t, w.find("#machines > tbody > tr"), 4, "one row per machine")
	assert.Equal(t, "installed", rowText(a))
	assert.Len(t, w.find(`tr[data-mac="`+a.String()+`"] .step.done`), 6, "alpha: every step done")
	assert.Equal(t, "GRUB", rowText(b))
	assert.Len(t, w.find(`tr[data-mac="`+b.String()+`"] .step.done`), 3, "bravo: DHCP, TFTP, GRUB")
	assert.Contains(t, rowText(c), "no matching group", "charlie's failure and its reason")
	assert.Len(t, w.find(`tr[data-mac="`+c.String()+`"] .failure`), 1, "shown as a failure")
	assert.Contains(t, rowText(d), "stuck for 25 minutes after TFTP")
	color := w.js(`return getComputedStyle(document.querySelector('tr[data-mac="` + c.String() + `"] .failure')).color`)
	assert.Equal(t, "rgb(204, 0, 0)", color, "a failure is red")

	// The timeline on demand.
	w.clickCSS(`tr[data-mac="` + a.String() + `"] details summary`)
	events := innerText(`tr[data-mac="` + a.String() + `"] details`)
	for _, stage := range []string{stageLease, stageGrub, stageIgnition, stageInstalled} {
		assert.Contains(t, events, stage)
	}

	// Sorting by name, then by name again (descending).
	names := func() string {
		return fmt.Sprint(w.js(`return Array.from(document.querySelectorAll('#machines > tbody > tr')).map(r => r.dataset.name).join(',')`))
	}
	w.clickCSS(`th[data-key="name"]`)
	assert.Equal(t, ",alpha,bravo,delta", names(), "charlie has no name")
	w.clickCSS(`th[data-key="name"]`)
	assert.Equal(t, "delta,bravo,alpha,", names())

	// Reinstall from the page (the browser is on loopback: an admin).
	w.clickCSS(`button.reinstall[data-mac="` + a.String() + `"]`)
	w.eventually("the reinstall answer", func() bool {
		return strings.Contains(innerText("#msg"), "will be reinstalled")
	})
	assert.False(t, l.state.isInstalled(a))
	// The page refreshes by itself: alpha is no longer installed, its
	// timeline stays open, the order stays.
	w.eventually("alpha's new status after a refresh", func() bool { return rowText(a) == "reinstall requested" })
	assert.Equal(t, true, w.js(`return document.querySelector('tr[data-mac="`+a.String()+`"] details').open`))
	assert.Equal(t, "delta,bravo,alpha,", names())

	png := w.call("GET", w.s("/screenshot"), nil).(string)
	raw, err := base64.StdEncoding.DecodeString(png)
	require.NoError(t, err)
	dir := os.Getenv("METALBOOT_ARTIFACTS")
	if dir == "" {
		dir = os.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	shot := filepath.Join(dir, "machines-page.png")
	require.NoError(t, os.WriteFile(shot, raw, 0o644))
	t.Logf("screenshot: %s (%d bytes)", shot, len(raw))
}

// netip4 gives each test machine an address from its MAC's last byte.
func netip4(m hwaddr.MAC) netip.Addr { return netip.AddrFrom4([4]byte{10, 99, 0, m[5]}) }

func netipAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
