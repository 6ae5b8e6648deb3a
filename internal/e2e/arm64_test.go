//go:build linux

package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/e2e"
)

// TestQEMUArgsARM64: an ARM64 machine is virt with a Cortex-A57 under
// TCG whatever accelerator is asked for, AAVMF as pflash, 1 GiB, the NIC
// without its x86 option ROM; HTTP boot switches AAVMF's PXE off.
func TestQEMUArgsARM64(t *testing.T) {
	mac := hwaddr.MustParse("52:54:00:99:00:41")
	j := strings.Join(e2e.QEMUArgs(e2e.VMConfig{Firmware: e2e.ARM64, MAC: mac, Tap: "tapa"}, "kvm", "/s.log", "/v.fd"), " ")
	for _, want := range []string{"-machine virt", "-cpu cortex-a57", "-accel tcg", "-m 1024 ",
		"if=pflash,format=raw,unit=0,readonly=on,file=" + e2e.AAVMFCode, "if=pflash,format=raw,unit=1,file=/v.fd",
		"virtio-net-pci,netdev=n0,mac=52:54:00:99:00:41,bootindex=1,romfile="} {
		assert.Contains(t, j, want)
	}
	assert.NotContains(t, j, "kvm")
	assert.NotContains(t, j, "fw_cfg")
	assert.NotContains(t, j, "q35")
	h := strings.Join(e2e.QEMUArgs(e2e.VMConfig{Firmware: e2e.ARM64, MAC: mac, Tap: "tapb", HTTPBoot: true, MemoryMB: 768}, "tcg", "/s.log", "/v.fd"), " ")
	assert.Contains(t, h, "-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n -fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=n")
	assert.Contains(t, h, "-m 768 ")
}

// TestARM64DataDir: an ARM64 machine's MAC has two groups, the one with
// arch=arm64 booting the ARM64 profile under its hostname, the one
// without it the x86-64 profile under another.
func TestARM64DataDir(t *testing.T) {
	dir := t.TempDir()
	ms := e2e.ARM64Machines()
	require.NoError(t, e2e.WriteDataDir(dir, ms))
	b, err := os.ReadFile(filepath.Join(dir, "groups", "e2e-"+ms[0].Name+".json"))
	require.NoError(t, err)
	s := string(b)
	for _, want := range []string{`"arch": "arm64"`, `"mac": "52:54:00:99:00:41"`, `"profile": "` + e2e.ProfileARM64ID + `"`, `"hostname": "arm64.lab"`} {
		assert.Contains(t, s, want)
	}
	b, err = os.ReadFile(filepath.Join(dir, "groups", "e2e-"+ms[0].Name+"-any-arch.json"))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"hostname": "`+e2e.WrongArchHostname(ms[0])+`"`)
	assert.NotContains(t, string(b), "arch\": \"arm64")
	b, err = os.ReadFile(filepath.Join(dir, "profiles", e2e.ProfileARM64ID+".json"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "console=ttyAMA0")
	assert.Contains(t, string(b), "/assets/arm64/vmlinuz")
	assert.Equal(t, "grub/arm64-efi/core-http.efi", e2e.BootFiles{ARM64: "grub/arm64-efi/core.efi", ARM64HTTP: "grub/arm64-efi/core-http.efi"}.For(ms[1]))
	assert.Equal(t, "grub/arm64-efi/core.efi", e2e.BootFiles{ARM64: "grub/arm64-efi/core.efi", EFI: "x"}.For(ms[0]))
}

// TestWriteARM64Assets builds the ARM64 initrd from the cached arm64
// packages (go run ./internal/e2e/prefetch): the arm64 busybox and the
// kernel's virtio modules, in load order.
func TestWriteARM64Assets(t *testing.T) {
	p := e2e.NeedARM64Packages(t)
	a, err := e2e.WriteARM64Assets(t.TempDir(), p)
	require.NoError(t, err)
	require.Len(t, p.Kernel.Modules, len(e2e.VirtioModules))
	for i, m := range p.Kernel.Modules {
		assert.Equal(t, e2e.VirtioModules[i]+".ko", filepath.Base(m))
		assert.Contains(t, m, "-cloud-arm64")
	}
	bb, err := os.ReadFile(p.Busybox)
	require.NoError(t, err)
	require.Greater(t, len(bb), 20)
	assert.Equal(t, "\x7fELF", string(bb[:4]))
	assert.Equal(t, []byte{0xb7, 0x00}, bb[18:20], "busybox is an AArch64 ELF (e_machine 183)")
	k, err := os.ReadFile(a.Vmlinuz)
	require.NoError(t, err)
	assert.Equal(t, "ARM\x64", string(k[56:60]), "the kernel is an ARM64 Image")
	cpio, err := os.ReadFile(a.Initrd)
	require.NoError(t, err)
	assert.Contains(t, string(cpio), "virtio_net.ko")
	assert.True(t, strings.Contains(string(cpio), string(bb[:4096])), "the initrd holds the arm64 busybox")
}

// TestCachedARM64: a manifest whose files are gone is no cache.
func TestCachedARM64(t *testing.T) {
	dir := t.TempDir()
	_, err := e2e.CachedARM64(dir)
	assert.ErrorIs(t, err, e2e.ErrNoARM64)
	require.NoError(t, os.WriteFile(filepath.Join(dir, e2e.ARM64Manifest),
		[]byte(`{"Kernel": {"Package": "linux-image-x-cloud-arm64", "Dir": "`+dir+`/gone"}, "GrubDir": "`+dir+`", "Busybox": "`+dir+`/busybox"}`), 0o644))
	_, err = e2e.CachedARM64(dir)
	assert.ErrorIs(t, err, e2e.ErrNoARM64)
}
