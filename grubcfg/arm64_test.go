//go:build linux

package grubcfg

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/internal/e2e"
)

// arm64GrubDir returns Debian's arm64-efi GRUB modules: installed, or
// unpacked in the e2e cache by internal/e2e/prefetch (from the cache
// only: tests do not download). It skips when there are none.
func arm64GrubDir(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(DefaultGrubLibDir, PlatformEFIARM64, "modinfo.sh")); err == nil {
		return filepath.Join(DefaultGrubLibDir, PlatformEFIARM64)
	}
	dirs, _ := filepath.Glob(filepath.Join(e2e.CacheDir(), e2e.GrubARM64Package+"_*_arm64", "usr", "lib", "grub", PlatformEFIARM64))
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "modinfo.sh")); err == nil {
			return dirs[i]
		}
	}
	t.Skipf("no arm64-efi GRUB modules in %s or %s (go run ./internal/e2e/prefetch as root)", DefaultGrubLibDir, e2e.CacheDir())
	return ""
}

// peMachine is the machine type of a PE/COFF image (0xaa64 ARM64,
// 0x8664 x86-64).
func peMachine(t *testing.T, b []byte) uint16 {
	t.Helper()
	require.True(t, bytes.HasPrefix(b, []byte("MZ")), "PE/COFF header")
	require.Greater(t, len(b), 0x40)
	off := int(binary.LittleEndian.Uint32(b[0x3c:]))
	require.Greater(t, len(b), off+6)
	require.Equal(t, "PE\x00\x00", string(b[off:off+4]))
	return binary.LittleEndian.Uint16(b[off+4:])
}

// TestMakeNetDirARM64: with the arm64-efi modules named in PlatformDirs
// (Debian's grub-efi-arm64-bin unpacked on this amd64 machine),
// MakeNetDir makes grub/arm64-efi/core.efi, where DHCP points client
// architecture 11, and the ARM64 HTTP-boot image where it points 19,
// both ARM64 PE images, next to the x86 ones, all with the same prefix
// (so the same generated first stage).
func TestMakeNetDirARM64(t *testing.T) {
	needGRUBNetDir(t)
	mods := arm64GrubDir(t)
	dir := t.TempDir()
	nd, err := MakeNetDir(context.Background(), dir, NetDirOptions{
		PlatformDirs: map[string]string{PlatformEFIARM64: mods},
		HTTPHost:     "10.0.0.5:8080",
	})
	require.NoError(t, err)
	assert.Equal(t, []string{PlatformBIOS, PlatformEFIx64, PlatformEFIARM64}, nd.Made)
	assert.Empty(t, nd.Skipped)
	assert.Equal(t, map[string]string{
		PlatformEFIx64:   "grub/x86_64-efi/core-http.efi",
		PlatformEFIARM64: "grub/arm64-efi/core-http.efi",
	}, nd.HTTPBootImages)
	assert.Equal(t, "grub/x86_64-efi/core-http.efi", nd.HTTPBootImage)
	for arch, machine := range map[dhcpsrv.Arch]uint16{
		dhcpsrv.ArchEFIARM64: 0xaa64, dhcpsrv.ArchEFIARM64HTTP: 0xaa64,
		dhcpsrv.ArchEFIx64: 0x8664, dhcpsrv.ArchEFIx64HTTP: 0x8664,
	} {
		want, ok := BootFilePath(arch)
		require.True(t, ok)
		require.Equal(t, want, nd.BootFiles[arch], "%s: the file DHCP hands out", arch)
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(want)))
		require.NoError(t, err, arch.String())
		assert.Equal(t, machine, peMachine(t, b), "%s: %s", arch, want)
	}
	assert.Equal(t, "grub/arm64-efi/core.efi", nd.BootFiles[dhcpsrv.ArchEFIARM64])
	img, err := os.ReadFile(filepath.Join(dir, "grub", "arm64-efi", "core-http.efi"))
	require.NoError(t, err)
	assert.Contains(t, string(img), "set prefix=(http,10.0.0.5:8080)/grub")
	for _, f := range []string{"normal.mod", "http.mod", "efinet.mod", "linux.mod"} {
		_, err := os.Stat(filepath.Join(dir, "grub", "arm64-efi", f))
		assert.NoError(t, err, "GRUB loads %s from the prefix", f)
	}

	// ARM64 alone, no HTTP host: the image is skipped and said so.
	nd, err = MakeNetDir(context.Background(), t.TempDir(), NetDirOptions{
		Platforms:    []string{PlatformEFIARM64},
		PlatformDirs: map[string]string{PlatformEFIARM64: mods},
	})
	require.NoError(t, err)
	assert.Equal(t, []string{PlatformEFIARM64}, nd.Made)
	assert.Equal(t, []Skip{{What: "UEFI HTTP boot image (arm64-efi)", Reason: "no HTTP host given"}}, nd.Skipped)
	assert.Equal(t, map[dhcpsrv.Arch]string{dhcpsrv.ArchEFIARM64: "grub/arm64-efi/core.efi"}, nd.BootFiles)

	// A PlatformDirs key that is no platform fails before anything runs.
	empty := t.TempDir()
	_, err = MakeNetDir(context.Background(), empty, NetDirOptions{PlatformDirs: map[string]string{"arm64": mods}})
	assert.ErrorIs(t, err, ErrBadOption)
	ents, _ := os.ReadDir(empty)
	assert.Empty(t, ents)
}

// TestMakeHTTPBootImageFormat: the image's format follows the modules'
// platform; BIOS modules make no HTTP-boot image.
func TestMakeHTTPBootImageFormat(t *testing.T) {
	needGRUBNetDir(t)
	out := filepath.Join(t.TempDir(), "x.efi")
	err := MakeHTTPBootImage(context.Background(), filepath.Join(DefaultGrubLibDir, PlatformBIOS), out, "10.0.0.1:8080")
	assert.ErrorContains(t, err, "not UEFI")
	mods := arm64GrubDir(t)
	require.NoError(t, MakeHTTPBootImage(context.Background(), mods, out, "10.0.0.1:8080"))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, uint16(0xaa64), peMachine(t, b))
}
