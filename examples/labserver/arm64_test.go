package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/profile"
)

// cachedARM64Grub is the arm64-efi GRUB module directory that
// internal/e2e/prefetch unpacks into the e2e cache (tests do not
// download); it skips when there is none.
func cachedARM64Grub(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("METALBOOT_E2E_CACHE")
	if cache == "" {
		cache = "/var/cache/metalboot-e2e"
	}
	dirs, _ := filepath.Glob(filepath.Join(cache, "grub-efi-arm64-bin_*_arm64", "usr", "lib", "grub", "arm64-efi"))
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "modinfo.sh")); err == nil {
			return dirs[i]
		}
	}
	t.Skipf("no unpacked grub-efi-arm64-bin under %s (go run ./internal/e2e/prefetch as root)", cache)
	return ""
}

// TestMakeTFTPRootARM64: -grub-dir arm64-efi=DIR adds the ARM64 tree
// (core.efi for client architecture 11, core-http.efi for 19, both ARM64
// PE images) beside the x86 ones; a bad -grub-dir is a usage error.
func TestMakeTFTPRootARM64(t *testing.T) {
	need(t, "grub-mknetdir", "grub-common")
	mods := cachedARM64Grub(t)
	dir := t.TempDir()
	var out, errb strings.Builder
	require.Equal(t, exitOK, run([]string{"-make-tftp-root", dir, "-base-url", "http://10.0.0.5:8080", "-grub-dir", "arm64-efi=" + mods}, &out, &errb), errb.String())
	for _, arch := range []dhcpsrv.Arch{dhcpsrv.ArchEFIARM64, dhcpsrv.ArchEFIARM64HTTP} {
		f, ok := grubcfg.BootFilePath(arch)
		require.True(t, ok)
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
		require.NoError(t, err, "%s: DHCP hands out %s", arch, f)
		require.True(t, bytes.HasPrefix(b, []byte("MZ")), f)
		off := binary.LittleEndian.Uint32(b[0x3c:])
		assert.Equal(t, uint16(0xaa64), binary.LittleEndian.Uint16(b[off+4:]), "%s is an ARM64 image", f)
	}
	assert.Contains(t, out.String(), "arm64-efi: made")
	assert.Contains(t, out.String(), "UEFI HTTP boot image (arm64-efi) for http://10.0.0.5:8080")

	for _, bad := range []string{"arm64", "arm64=/x", "arm64-efi=", "arm64-efi=/a,arm64-efi=/b"} {
		args := []string{"-make-tftp-root", t.TempDir()}
		for _, b := range strings.Split(bad, ",") {
			args = append(args, "-grub-dir", b)
		}
		errb.Reset()
		assert.Equal(t, exitConfig, run(args, &out, &errb), bad)
		assert.Contains(t, errb.String(), "-grub-dir", bad)
	}
}

// TestArchNamesAgree: every CPU name dhcpsrv gives a DHCP client
// architecture (what labserver passes the resolver from the lease) is a
// canonical profile.NormalizeArch name, so a group's "arch" selector
// matches the lease and GRUB's arch= alike.
func TestArchNamesAgree(t *testing.T) {
	for a := dhcpsrv.Arch(0); a < 64; a++ {
		cpu := a.CPU()
		if cpu == "" {
			continue
		}
		got, err := profile.NormalizeArch(cpu)
		require.NoError(t, err, "%s", a)
		assert.Equal(t, cpu, got, "%s", a)
	}
	assert.Equal(t, "arm64", dhcpsrv.ArchEFIARM64.CPU())
	assert.Equal(t, "arm64", dhcpsrv.ArchEFIARM64HTTP.CPU())
}
