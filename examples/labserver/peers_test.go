package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/grubcfg"
)

// startDemo runs the demo lab in-process on ephemeral loopback ports.
func startDemo(t *testing.T, mutate func(*Config)) *lab {
	t.Helper()
	any := "127.0.0.1:0"
	l := buildLab(t, &Config{HTTP: &any, TFTP: &any, DNS: &any}, mutate)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, l.start(ctx))
	t.Cleanup(func() { cancel(); _ = l.wait(ctx) })
	return l
}

func need(t *testing.T, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s)", bin, pkg)
	}
	return p
}

// TestBannerCommands runs the three commands the banner suggests with the
// real clients: curl, tftp-hpa's tftp and dig.
func TestBannerCommands(t *testing.T) {
	l := startDemo(t, nil)
	banner := l.banner()
	for _, want := range []string{"curl 'http://", "tftp 127.0.0.1 ", "dig @127.0.0.1 -p "} {
		assert.Contains(t, banner, want)
	}

	curl := need(t, "curl", "curl")
	out, err := exec.Command(curl, "-sf", "http://"+l.addrs["http"]+"/grub?mac=00:23:32:2f:40:3c").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "ignition?mac=00:23:32:2f:40:3c")

	tftp := need(t, "tftp", "tftp-hpa")
	host, port, _ := net.SplitHostPort(l.addrs["tftp"])
	dir := t.TempDir()
	for _, name := range []string{"grub.cfg", "grub/grub.cfg", "grub/grub.cfg-01-00-30-48-fb-e2-44"} {
		local := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
		cmd := exec.Command(tftp, host, port, "-m", "binary", "-v", "-c", "get", name, local)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s: %s", name, out)
		b, err := os.ReadFile(local)
		require.NoError(t, err)
		want := `configfile "/grub?mac=${net_default_mac}&arch=${grub_cpu}"`
		if strings.Contains(name, "-01-") {
			want = `/grub?mac=00:30:48:fb:e2:44`
		}
		assert.Contains(t, string(b), want, "%s: tftp said %s", name, out)
		grubCheck(t, string(b))
	}
	// A TFTP fetch of the per-MAC name puts the machine in the timeline.
	var seen bool
	for _, m := range l.timeline.snapshot() {
		if m.MAC == "00:30:48:fb:e2:44" && len(m.Events) > 0 && m.Events[0].Stage == stageTFTP {
			seen = true
		}
	}
	assert.True(t, seen, "timeline has the TFTP fetch of grub.cfg-01-<mac>")

	dig := need(t, "dig", "bind9-dnsutils")
	host, port, _ = net.SplitHostPort(l.addrs["dns"])
	for q, want := range map[string]string{"mp.lab": "172.22.10.50", "smpc.lab": "172.22.10.54", "deploy.lab": "172.22.10.2", "-x 172.22.10.50": "mp.lab."} {
		args := append([]string{"@" + host, "-p", port, "+short", "+time=2", "+tries=1"}, strings.Fields(q)...)
		out, err := exec.Command(dig, args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, want, strings.TrimSpace(string(out)), q)
	}
}

func TestMakeTFTPRoot(t *testing.T) {
	need(t, "grub-mknetdir", "grub-common")
	for _, d := range []string{"/usr/lib/grub/x86_64-efi", "/usr/lib/grub/i386-pc"} {
		if _, err := os.Stat(d); err != nil {
			t.Skipf("%s missing (Debian grub-efi-amd64-bin, grub-pc-bin)", d)
		}
	}
	dir := t.TempDir()
	var out, errb strings.Builder
	require.Equal(t, exitOK, run([]string{"-make-tftp-root", dir, "-base-url", "http://10.0.0.5:8080"}, &out, &errb), errb.String())
	httpImage, ok := grubcfg.BootFilePath(dhcpsrv.ArchEFIx64HTTP)
	require.True(t, ok)
	for _, f := range []string{"grub/x86_64-efi/core.efi", "grub/i386-pc/core.0", httpImage} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Greater(t, st.Size(), int64(10000), f)
	}
	// The HTTP-boot image reads everything else from base_url's server.
	b, err := os.ReadFile(filepath.Join(dir, httpImage))
	require.NoError(t, err)
	assert.Contains(t, string(b), "set prefix=(http,10.0.0.5:8080)/grub")
	assert.Contains(t, out.String(), "UEFI HTTP boot image (x86_64-efi) for http://10.0.0.5:8080")
}

// TestBannerTryLinesRun runs every command under the banner's "Try:", as
// printed, against the demo inventory, an operator's inventory and one
// with no machine: each succeeds and prints something; none names a demo
// machine the loaded inventory does not have.
func TestBannerTryLinesRun(t *testing.T) {
	need(t, "curl", "curl")
	need(t, "tftp", "tftp-hpa")
	need(t, "dig", "bind9-dnsutils")
	write := func(dir, name, body string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	own, bare := t.TempDir(), t.TempDir()
	for _, d := range []string{own, bare} {
		write(d, "profiles/p.json", `{"id": "p", "boot": {"kernel": "/assets/vmlinuz", "args": ["console=ttyS0"]}}`)
	}
	write(own, "groups/node1.json", `{"id": "node1", "profile": "p", "selector": {"mac": "52:54:00:12:34:56"}, "metadata": {"hostname": "node1", "ip": "10.1.2.3"}}`)
	write(bare, "groups/default.json", `{"id": "default", "profile": "p"}`)

	for name, data := range map[string]string{"demo": "", "own": own, "bare": bare} {
		t.Run(name, func(t *testing.T) {
			l := startDemo(t, func(c *Config) { c.Data = data })
			banner := l.banner()
			_, try, ok := strings.Cut(banner, "Try:\n")
			require.True(t, ok, banner)
			if name != "demo" {
				assert.NotContains(t, banner, "mp.lab")
				assert.NotContains(t, banner, "00:23:32:2f:40:3c")
			}
			if name == "own" {
				assert.Contains(t, try, "52:54:00:12:34:56")
				assert.Contains(t, try, "node1.lab")
			}
			lines := strings.Split(strings.TrimSpace(try), "\n")
			require.NotEmpty(t, lines)
			for _, line := range lines {
				cmd := exec.Command("sh", "-c", strings.TrimSpace(line))
				out, err := cmd.Output()
				require.NoError(t, err, "%s", line)
				assert.NotEmpty(t, strings.TrimSpace(string(out)), "%s printed nothing", line)
			}
		})
	}
}

// TestBindErrorSaysWhatToChange: a port in use stops the start with one
// line that names the socket once and the key to change (issue #16: the
// DNS bind error was repeated twice and named no key).
func TestBindErrorSaysWhatToChange(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	taken, empty, any := pc.LocalAddr().String(), "", "127.0.0.1:0"
	l := buildLab(t, &Config{HTTP: &any, TFTP: &empty, DNS: &taken}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = l.start(ctx)
	require.Error(t, err)
	cancel()
	_ = l.wait(ctx)
	msg := err.Error()
	assert.Equal(t, 1, strings.Count(msg, "listen udp"), msg)
	assert.Contains(t, msg, "set dns (-dns) to a free address")
}
