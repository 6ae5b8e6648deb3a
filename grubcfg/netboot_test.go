package grubcfg

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/profile"
)

// TestRealGRUBNetBootEFI network-boots real firmware and GRUB 2.06 through
// the first stage and /grub this package renders, entirely in user space:
// QEMU's user-mode network (slirp) gives the VM its DHCP lease and serves
// GRUB's network image over TFTP, and the guest's 10.0.2.2 is this host's
// loopback, where the test's HTTP server listens on 127.0.0.1. No network
// namespace, no host interface, no broadcast outside QEMU.
//
// OVMF PXE-boots grub-mknetdir's x86_64-efi image; GRUB reads the rendered
// first stage, must send exactly "GET /grub?mac=52:54:00:12:34:56", gets
// the machine's configuration, boots its EFI entry (not the BIOS one) and
// asks for the kernel; the test then stops QEMU.
func TestRealGRUBNetBootEFI(t *testing.T) {
	reqs, ua, s, guestAddr := netbootEFI(t, false)
	require.NotEmpty(t, reqs, "GRUB made no HTTP request; console:\n%s", s)
	assert.Equal(t, "/grub?mac=52:54:00:12:34:56", reqs[0], "the first stage's configfile reaches the server intact")
	assert.True(t, strings.HasPrefix(ua, "GRUB 2.0"), "User-Agent %q", ua)
	assert.Contains(t, reqs, "/assets/vmlinuz", "GRUB booted an entry and fetched its kernel; console:\n%s", s)
	assert.Contains(t, s, "metalboot: loading http://"+guestAddr+"/grub?mac=52:54:00:12:34:56")
	assert.Contains(t, s, "metalboot: machine 52:54:00:12:34:56, group m, profile p")
	assert.Contains(t, s, "Booting `netboot test (EFI)'", "the EFI entry is the default under UEFI")
	assert.NotContains(t, s, "(BIOS)'")
	assert.NotContains(t, s, "error: syntax error")
	if t.Failed() {
		t.Logf("requests: %q\nconsole:\n%s", reqs, s)
	}
}

// TestRealGRUBLocalBootEFI: for an installed machine /grub answers
// RenderLocal's configuration; under UEFI its "exit" must hand control
// back to the firmware, which goes on with its next boot option.
func TestRealGRUBLocalBootEFI(t *testing.T) {
	reqs, _, s, _ := netbootEFI(t, true)
	require.NotEmpty(t, reqs, "GRUB made no HTTP request; console:\n%s", s)
	assert.Equal(t, "/grub?mac=52:54:00:12:34:56", reqs[0])
	assert.NotContains(t, reqs, "/assets/vmlinuz", "an installed machine loads no installer")
	i := strings.Index(s, "metalboot: installed; returning to the firmware")
	require.GreaterOrEqual(t, i, 0, "local-boot entry ran; console:\n%s", s)
	assert.Contains(t, s[i:], "BdsDxe: loading Boot", "the firmware went on with its next boot option; console:\n%s", s)
}

// netbootEFI boots the VM once; the HTTP server answers RenderLocal when
// local is set. It returns the request URIs, GRUB's User-Agent, the
// console (CRs and escapes removed) and the server address as the guest
// sees it.
func netbootEFI(t *testing.T, local bool) (reqs []string, ua, console, guestAddr string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not booting QEMU")
	}
	const ovmfCode, ovmfVars = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	mknetdir, err := exec.LookPath("grub-mknetdir")
	if err != nil {
		t.Skip("grub-mknetdir not installed (apt-get install grub-common)")
	}
	for _, p := range []string{ovmfCode, ovmfVars, "/usr/lib/grub/x86_64-efi/http.mod"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s missing (apt-get install ovmf grub-efi-amd64-bin)", p)
		}
	}

	// The lab: one machine, a profile whose args need quoting.
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Name: "netboot test", Boot: profile.Boot{
			Kernel: "/assets/vmlinuz",
			Initrd: []string{"/assets/initrd.img"},
			Args:   []string{"ignition.config.url={{.BaseURL}}/ignition?mac={{.MAC}}&os=installed", "x='y'", "$(reboot)"},
		}}},
		Groups: []profile.Group{{ID: "m", Profile: "p", Selector: map[string]string{"mac": "52:54:00:12:34:56"}}},
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	guestAddr = "10.0.2.2:" + strconv.Itoa(port)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.Handle("/grub", &Handler{
		Resolver:  &profile.Resolver{Store: inv, BaseURL: "http://" + guestAddr},
		LocalBoot: func(*profile.Machine) bool { return local },
	})
	mux.HandleFunc("/assets/", func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
		cancel() // GRUB asked for the kernel: done
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, r.URL.RequestURI())
		if ua == "" {
			ua = r.UserAgent()
		}
		mu.Unlock()
		mux.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })

	dir := t.TempDir()
	tftp := filepath.Join(dir, "tftp")
	out, err := exec.Command(mknetdir, "--net-directory="+tftp, "--subdir=grub", "-d", "/usr/lib/grub/x86_64-efi").CombinedOutput()
	require.NoError(t, err, "grub-mknetdir: %s", out)
	first, err := FirstStage{HTTPAddr: guestAddr, Serial: &Serial{}}.Render()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(tftp, "grub", "grub.cfg"), first, 0o644))
	vars := filepath.Join(dir, "vars.fd")
	b, err := os.ReadFile(ovmfVars)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(vars, b, 0o644))

	cmd := exec.CommandContext(ctx, qemu, "-machine", "q35", "-accel", "tcg", "-m", "256", "-nodefaults",
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-netdev", "user,id=n0,ipv6=off,tftp="+tftp+",bootfile=grub/x86_64-efi/core.efi",
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile=,bootindex=1")
	w := &watchWriter{stop: func(s string) bool {
		i := strings.Index(s, "returning to the firmware")
		return i >= 0 && strings.Contains(s[i:], "BdsDxe: loading Boot")
	}, cancel: cancel}
	cmd.Stdout, cmd.Stderr = w, w
	_ = cmd.Run() // ends when the test cancels it (kernel requested, firmware moved on) or at the timeout
	mu.Lock()
	defer mu.Unlock()
	return reqs, ua, w.text(), guestAddr
}

// watchWriter collects QEMU's console and cancels when stop says so.
type watchWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	stop   func(string) bool
	cancel func()
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.stop(cleanConsole(w.buf.String())) {
		w.cancel()
	}
	return len(p), nil
}

func (w *watchWriter) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return cleanConsole(w.buf.String())
}

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]`)

func cleanConsole(s string) string {
	return ansiEscape.ReplaceAllString(strings.ReplaceAll(s, "\r", ""), "")
}
