package grubcfg

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/tftpsrv"
)

// TestFirstStageTFTPFallback: with TFTP set, the first stage GRUB 2.06
// accepts tries http only when GRUB is not locked down and loading the
// module worked, and otherwise loads the per-machine configuration from
// (tftp)<Path>?mac=…, each fetch followed by an echo that explains a
// failure; pinned to a MAC, both fetches name it literally.
func TestFirstStageTFTPFallback(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    FirstStage
	}{
		{"firststage-tftp", FirstStage{HTTPAddr: "10.99.0.1:8080", Serial: &Serial{}, TFTP: true}},
		{"firststage-tftp-pinned", FirstStage{HTTPAddr: "10.99.0.1:8080", MAC: hwaddr.MustParse("52:54:00:12:34:56"), OnFailure: FailExit, TFTP: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.f.Render()
			require.NoError(t, err)
			golden(t, tc.name, b)
			requireGRUBAccepts(t, string(b))
			toks, err := lexGRUB(string(b))
			require.NoError(t, err)
			var loads [][]string
			cmds := commands(toks)
			for i, c := range cmds {
				if c[0] == "configfile" {
					loads = append(loads, c)
					require.Less(t, i+1, len(cmds))
					assert.Equal(t, "echo", cmds[i+1][0], "an echo after configfile")
				}
			}
			mac := "<VAR${net_default_mac}>"
			if !tc.f.MAC.IsZero() {
				mac = tc.f.MAC.String()
			}
			q := mac + "&arch=<VAR${grub_cpu}>"
			assert.Equal(t, [][]string{{"configfile", "/grub?mac=" + q}, {"configfile", "(tftp)/grub?mac=" + q}}, loads)
			s := string(b)
			assert.Contains(t, s, "if [ \"$lockdown\" != \"y\" ]; then\n  if insmod http; then\n    set metalboot_http=y\n")
			assert.NotContains(t, s, "\ninsmod http\n", "http is only tried")
		})
	}
}

func TestTFTPFilePath(t *testing.T) {
	tf := &TFTPFiles{HTTPHost: "10.99.0.1:8080"}
	for in, want := range map[string]string{
		"/assets/vmlinuz":                            "(tftp)/assets/vmlinuz",
		"/assets/flatcar/current/image.cpio.gz":      "(tftp)/assets/flatcar/current/image.cpio.gz",
		"http://10.99.0.1:8080/assets/vmlinuz":       "(tftp)/assets/vmlinuz",
		"HTTP://10.99.0.1:8080/assets/a%20b":         "(tftp)/assets/a b",
		"tftp://10.0.0.5/boot/vmlinuz":               "(tftp,10.0.0.5)/boot/vmlinuz",
		"(hd0,gpt2)/boot/vmlinuz":                    "(hd0,gpt2)/boot/vmlinuz",
		"(tftp)/assets/x":                            "(tftp)/assets/x",
		"http://10.99.0.1:8080/assets/../grub/x.efi": "",
	} {
		got, err := tf.FilePath(in)
		if want == "" {
			assert.ErrorIs(t, err, ErrNeedsHTTP, in)
			continue
		}
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{
		"/other/vmlinuz",                       // not in the shared tree
		"/assets/../etc/passwd",                // not clean
		"/assets/vmlinuz?x=1",                  // a query reaches only HTTP
		"http://10.99.0.2:8080/assets/vmlinuz", // another server
		"http://10.99.0.1:8080/assets/k?x=1",
		"http://10.99.0.1:8080/ignition",
		"(http,10.99.0.1:8080)/assets/vmlinuz",
		"(HTTP)/assets/vmlinuz",
	} {
		_, err := tf.FilePath(in)
		assert.ErrorIs(t, err, ErrNeedsHTTP, in)
		assert.ErrorIs(t, err, ErrUnsupportedURL, in, "the Handler answers it as it answers an https kernel")
	}
	_, err := tf.FilePath("https://10.99.0.1/assets/vmlinuz")
	assert.ErrorIs(t, err, ErrUnsupportedURL)
	assert.NotErrorIs(t, err, ErrNeedsHTTP, "https is refused for its own reason")
	_, err = tf.FilePath("vmlinuz")
	assert.ErrorIs(t, err, ErrBadPath)
	_, err = tf.FilePath("http://10.99.0.1:8080/assets/a%0Ab")
	assert.ErrorIs(t, err, ErrBadPath)

	_, err = (&TFTPFiles{}).FilePath("http://10.99.0.1:8080/assets/vmlinuz")
	assert.ErrorIs(t, err, ErrNeedsHTTP, "no HTTPHost: URLs are not rewritten")
	for _, bad := range []TFTPFiles{{Dir: "/assets"}, {Dir: "a/../b"}, {Dir: "a b"}, {HTTPHost: "a,b"}} {
		_, err := AppendConfig(nil, resolve(t, demoResolver(t), "mac=00:23:32:2f:40:3c"), Options{TFTP: &bad})
		assert.ErrorIs(t, err, ErrBadOption, "%+v", bad)
	}
}

// sbInventory is a lab with a machine whose kernel is in the shared tree
// and one whose kernel is only on another HTTP server.
func sbInventory(t testing.TB) *profile.Inventory {
	t.Helper()
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{
			{ID: "local", Name: "signed Debian", Boot: profile.Boot{Kernel: "/assets/vmlinuz", Initrd: []string{"--name main /assets/initrd.cpio"},
				Args: []string{"initrd=main", "metalboot.ignition={{.BaseURL}}/ignition?mac={{.MAC}}", "console=ttyS0"}}},
			{ID: "remote", Boot: profile.Boot{Kernel: "http://mirror.example:80/vmlinuz"}},
		},
		Groups: []profile.Group{
			{ID: "sb", Profile: "local", Selector: map[string]string{"mac": "52:54:00:99:00:31"}, Metadata: map[string]any{"hostname": "sb.lab"}},
			{ID: "far", Profile: "remote", Selector: map[string]string{"mac": "52:54:00:99:00:32"}},
		},
	})
	require.NoError(t, err)
	return inv
}

// TestTFTPConfigHandler: the per-machine configuration over TFTP is what
// /grub answers (same selection, rendering and hooks), with kernel and
// initrd over TFTP; errors are the echo /grub gives GRUB; other names are
// not handled.
func TestTFTPConfigHandler(t *testing.T) {
	res := &profile.Resolver{Store: sbInventory(t), BaseURL: "http://10.99.0.1:8080"}
	var served []string
	opts := Options{Serial: &Serial{}, TFTP: &TFTPFiles{HTTPHost: "10.99.0.1:8080"}}
	h := &Handler{Resolver: res, Options: opts, OnServe: func(r *http.Request, m *profile.Machine, local bool) {
		served = append(served, r.RemoteAddr+" "+m.MAC.String())
	}}
	th := &TFTPConfigHandler{Handler: h}
	client := netip.MustParseAddrPort("10.99.0.100:2000")
	ask := func(name string) ([]byte, error) {
		return th.ServeTFTP(context.Background(), &tftpsrv.Request{Filename: name, Client: client})
	}

	b, err := ask("grub?mac=52:54:00:99:00:31")
	require.NoError(t, err)
	cfg := string(b)
	requireGRUBAccepts(t, cfg)
	want, err := AppendConfig(nil, resolve(t, res, "mac=52:54:00:99:00:31"), opts)
	require.NoError(t, err)
	assert.Equal(t, string(want), cfg, "the same configuration /grub renders with these options")
	lines := linuxLines(t, cfg)
	assert.Equal(t, "(tftp)/assets/vmlinuz", lines["efi"][1])
	assert.Contains(t, lines["efi"], "metalboot.ignition=http://10.99.0.1:8080/ignition?mac=52:54:00:99:00:31")
	assert.NotContains(t, lines["efi"], "initrd=main")
	assert.Contains(t, cfg, "\n  initrd '(tftp)/assets/initrd.cpio'\n")
	assert.Equal(t, []string{"10.99.0.100:2000 52:54:00:99:00:31"}, served, "OnServe sees the TFTP client")

	// Any spelling of the MAC, as /grub takes it.
	b2, err := ask("grub?mac=52-54-00-99-00-31")
	require.NoError(t, err)
	assert.Equal(t, cfg, string(b2))

	// Errors: GRUB prints the reason.
	for name, reason := range map[string]string{
		"grub?mac=52:54:00:99:00:99": "/grub answered 404 Not Found: no matching group",
		"grub?mac=zz":                "/grub answered 400 Bad Request: ",
		"grub?mac=52:54:00:99:00:32": "/grub answered 404 Not Found: no GRUB boot for machine 52:54:00:99:00:32",
	} {
		b, err := ask(name)
		require.NoError(t, err, name)
		assert.True(t, strings.HasPrefix(string(b), "echo 'metalboot: "+reason), "%s: %s", name, b)
		requireGRUBAccepts(t, string(b))
	}
	b, _ = ask("grub?mac=52:54:00:99:00:32")
	assert.Contains(t, string(b), "needs GRUB", "the reason names the missing http")

	for _, name := range []string{"grub/grub.cfg", "grub", "grubx64.efi", "assets/vmlinuz", "other?mac=52:54:00:99:00:31", "grub/x?mac=1"} {
		_, err := ask(name)
		assert.ErrorIs(t, err, tftpsrv.ErrNotHandled, name)
	}
	th2 := &TFTPConfigHandler{Handler: h, Path: "/metalboot/grub"}
	_, err = th2.ServeTFTP(context.Background(), &tftpsrv.Request{Filename: "metalboot/grub?mac=52:54:00:99:00:31", Client: client})
	assert.NoError(t, err)
}

func TestCheckTFTP(t *testing.T) {
	inv := sbInventory(t)
	probs := CheckTFTP(inv, TFTPFiles{HTTPHost: "10.99.0.1:8080"}, nil)
	require.Len(t, probs, 1)
	assert.Equal(t, "far", probs[0].Group.ID)
	assert.Equal(t, LoaderNameTFTP, probs[0].Loader)
	assert.ErrorIs(t, probs[0].Err, ErrNeedsHTTP)
	assert.Empty(t, CheckTFTP(inv, TFTPFiles{HTTPHost: "10.99.0.1:8080"}, func(g *profile.Group) bool { return g.ID == "sb" }))
	assert.Empty(t, Check(inv), "over HTTP both boot")
}

// TestInstallSecureBoot copies the chain where DHCP points clients and
// where shim looks for GRUB; a missing shim or GRUB is ErrNoSecureBoot, a
// missing MokManager a skip.
func TestInstallSecureBoot(t *testing.T) {
	src := t.TempDir()
	for _, n := range []string{"shim", "grub", "mm"} {
		require.NoError(t, os.WriteFile(filepath.Join(src, n), []byte("signed "+n), 0o600))
	}
	dir := t.TempDir()
	sb, err := InstallSecureBoot(dir, SecureBootOptions{Shim: filepath.Join(src, "shim"), GRUB: filepath.Join(src, "grub"), MokManager: filepath.Join(src, "mm")})
	require.NoError(t, err)
	assert.Empty(t, sb.Skipped)
	assert.Equal(t, "shimx64.efi", sb.BootFiles[dhcpsrv.ArchEFIx64])
	assert.Equal(t, dhcpsrv.DefaultShimFiles[dhcpsrv.ArchEFIBC], sb.BootFiles[dhcpsrv.ArchEFIBC])
	for name, want := range map[string]string{"shimx64.efi": "signed shim", "grubx64.efi": "signed grub", "mmx64.efi": "signed mm"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, want, string(b))
		st, _ := os.Stat(filepath.Join(dir, name))
		assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	assert.Empty(t, left, "no temporary files left")

	sb, err = InstallSecureBoot(t.TempDir(), SecureBootOptions{Shim: filepath.Join(src, "shim"), GRUB: filepath.Join(src, "grub"), MokManager: filepath.Join(src, "none")})
	require.NoError(t, err)
	require.Len(t, sb.Skipped, 1)
	assert.Len(t, sb.Files, 2)
	_, err = InstallSecureBoot(t.TempDir(), SecureBootOptions{Shim: filepath.Join(src, "none"), GRUB: filepath.Join(src, "grub")})
	assert.True(t, errors.Is(err, ErrNoSecureBoot), "%v", err)

	// Debian's, when installed.
	if _, err := os.Stat(DebianSignedGRUB); err != nil {
		t.Logf("Debian's signed binaries not installed (apt-get install shim-signed grub-efi-amd64-signed): %v", err)
		return
	}
	sb, err = InstallSecureBoot(t.TempDir(), SecureBootOptions{})
	require.NoError(t, err)
	assert.Len(t, sb.Files, 3)
}

// FuzzTFTPConfigHandler: any TFTP name (from the network) is either not
// handled, or answered with a script GRUB reads as intended: it lexes,
// adds no command beyond the renderer's, and grub-script-check accepts it.
func FuzzTFTPConfigHandler(f *testing.F) {
	for _, s := range []string{
		"grub?mac=52:54:00:99:00:31", "grub?mac=zz", "grub?mac=52:54:00:99:00:31&hostname=x%27%3Breboot",
		"grub?", "grub?mac=52:54:00:99:00:32", "grub?%zz", "grub?mac=;reboot", "grub/grub.cfg", "grub?mac=a&mac=b",
	} {
		f.Add(s)
	}
	res := &profile.Resolver{Store: sbInventory(f), BaseURL: "http://10.99.0.1:8080"}
	th := &TFTPConfigHandler{Handler: &Handler{Resolver: res, Options: Options{TFTP: &TFTPFiles{HTTPHost: "10.99.0.1:8080"}}}}
	bin := scriptCheckPath()
	allowed := map[string]bool{"echo": true, "set": true, "if": true, "then": true, "fi": true, "else": true, "menuentry": true, "linux": true, "initrd": true, "}": true}
	f.Fuzz(func(t *testing.T, name string) {
		b, err := th.ServeTFTP(context.Background(), &tftpsrv.Request{Filename: name, Client: netip.MustParseAddrPort("10.99.0.100:1024")})
		if err != nil {
			require.ErrorIs(t, err, tftpsrv.ErrNotHandled, "%q", name)
			return
		}
		toks, err := lexGRUB(string(b))
		require.NoError(t, err, "%q:\n%s", name, b)
		for _, c := range commands(toks) {
			if !allowed[c[0]] && !strings.HasPrefix(c[0], "[") {
				t.Fatalf("%q: command %q in\n%s", name, c[0], b)
			}
		}
		if bin != "" {
			require.NoError(t, grubCheck(bin, string(b)), "%q", name)
		}
	})
}
