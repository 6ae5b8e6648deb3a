//go:build linux

package grubcfg

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/e2e"
	"github.com/metalboot/metalboot/profile"
)

// TestRealGRUBNetBootEFI network-boots real firmware and GRUB 2.06 through
// the first stage and /grub this package renders, entirely in user space:
// QEMU's user-mode network (slirp, e2e.UserNet) gives the VM its DHCP lease
// and serves GRUB's network image over TFTP, and the guest's 10.0.2.2 is
// this host's loopback, where the test's HTTP server listens on 127.0.0.1.
// No network namespace, no host interface, no broadcast outside QEMU.
//
// OVMF PXE-boots MakeNetDir's x86_64-efi image; GRUB reads the rendered
// first stage, must send exactly "GET /grub?mac=52:54:00:12:34:56", gets
// the machine's configuration, boots its EFI entry (not the BIOS one) and
// asks for the kernel; the test then stops QEMU.
func TestRealGRUBNetBootEFI(t *testing.T) {
	reqs, ua, s, guestAddr := netbootEFI(t, false)
	require.NotEmpty(t, reqs, "GRUB made no HTTP request; console:\n%s", s)
	assert.Equal(t, "/grub?mac=52:54:00:12:34:56&arch=x86_64", reqs[0], "the first stage's configfile reaches the server intact, $grub_cpu included")
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
	assert.Equal(t, "/grub?mac=52:54:00:12:34:56&arch=x86_64", reqs[0])
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
	e2e.NeedFirmware(t, e2e.UEFI)
	if _, err := os.Stat("/usr/lib/grub/x86_64-efi/http.mod"); err != nil {
		t.Skip("GRUB x86_64-efi modules missing (apt-get install grub-efi-amd64-bin)")
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

	// GRUB's network image where DHCP's default boot policy points UEFI
	// x64 firmware, and the first stage where that GRUB looks for it.
	dir := t.TempDir()
	tftp := filepath.Join(dir, "tftp")
	nd, err := MakeNetDir(ctx, tftp, NetDirOptions{Platforms: []string{PlatformEFIx64}})
	if errors.Is(err, ErrNoGRUB) {
		t.Skip(err)
	}
	require.NoError(t, err)
	boot := nd.BootFiles[dhcpsrv.ArchEFIx64]
	require.NotEmpty(t, boot)
	first, err := FirstStage{HTTPAddr: guestAddr, Serial: &Serial{}}.Render()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(tftp, filepath.FromSlash(path.Dir(path.Dir(boot))), "grub.cfg"), first, 0o644))

	// OVMF's own PXE client on QEMU's user-mode network: QEMU answers DHCP
	// and serves the TFTP root; the guest's 10.0.2.2 is this host's
	// loopback.
	vm := e2e.StartVM(t, nil, e2e.VMConfig{Name: "netboot", Firmware: e2e.UEFI, UseOVMFPXE: true,
		MAC: hwaddr.MustParse("52:54:00:12:34:56"), UserNet: &e2e.UserNet{TFTPRoot: tftp, BootFile: boot},
		Dir: dir, MemoryMB: 256, Timeout: 150 * time.Second})
	// Ends when GRUB asks for the kernel (the handler cancels ctx), when
	// the firmware moved on after a local boot's exit, or at the timeout.
	_, _ = vm.WaitConsole(ctx, func(s string) bool {
		i := strings.Index(s, "returning to the firmware")
		return i >= 0 && strings.Contains(s[i:], "BdsDxe: loading Boot")
	})
	vm.Stop()
	mu.Lock()
	defer mu.Unlock()
	return reqs, ua, e2e.StripANSI(vm.Serial()), guestAddr
}
