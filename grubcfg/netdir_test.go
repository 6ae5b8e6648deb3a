package grubcfg

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
)

// TestBootFilePath: every default boot file of dhcpsrv has a place in the
// TFTP root; HTTP-boot ones are the same files without the leading "/".
func TestBootFilePath(t *testing.T) {
	for arch, file := range dhcpsrv.DefaultBootFiles {
		got, ok := BootFilePath(arch)
		require.True(t, ok, "%s: %q", arch, file)
		assert.Equal(t, strings.TrimPrefix(file, "/"), got, arch.String())
	}
	_, ok := BootFilePath(dhcpsrv.ArchUnknown)
	assert.False(t, ok)
	for p, arch := range platformArch {
		sub, err := platformSubdir(p, arch)
		require.NoError(t, err)
		assert.Equal(t, "grub", sub, p)
	}
}

// needGRUBNetDir skips unless grub-mknetdir and the x86 platforms' modules
// are installed.
func needGRUBNetDir(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("grub-mknetdir"); err != nil {
		t.Skip("grub-mknetdir not installed (apt-get install grub-common)")
	}
	for _, p := range []string{PlatformBIOS, PlatformEFIx64} {
		if _, err := os.Stat(filepath.Join(DefaultGrubLibDir, p, "modinfo.sh")); err != nil {
			t.Skipf("GRUB %s modules missing (apt-get install grub-pc-bin grub-efi-amd64-bin)", p)
		}
	}
}

// TestMakeNetDirBootFiles: after MakeNetDir every boot file dhcpsrv hands
// out for the x86 platforms (BIOS, UEFI x64 and its EBC alias, UEFI HTTP
// boot) exists where DHCP points the firmware, and the HTTP-boot image
// reads from the given server.
func TestMakeNetDirBootFiles(t *testing.T) {
	needGRUBNetDir(t)
	dir := t.TempDir()
	nd, err := MakeNetDir(context.Background(), dir, NetDirOptions{HTTPHost: "10.0.0.5:8080"})
	require.NoError(t, err)
	assert.Equal(t, dir, nd.Dir)
	assert.Subset(t, nd.Made, []string{PlatformBIOS, PlatformEFIx64})
	for _, arch := range []dhcpsrv.Arch{dhcpsrv.ArchBIOS, dhcpsrv.ArchEFIx64, dhcpsrv.ArchEFIBC, dhcpsrv.ArchEFIx64HTTP} {
		file := dhcpsrv.DefaultBootFiles[arch]
		require.NotEmpty(t, file, arch.String())
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(file, "/"))))
		require.NoError(t, err, "%s: DHCP hands out %s", arch, file)
		assert.Greater(t, st.Size(), int64(10000), file)
		assert.Equal(t, strings.TrimPrefix(file, "/"), nd.BootFiles[arch], arch.String())
	}
	if slices.Contains(nd.Made, PlatformEFIARM64) {
		assert.Contains(t, nd.BootFiles, dhcpsrv.ArchEFIARM64)
	} else {
		assert.NotContains(t, nd.BootFiles, dhcpsrv.ArchEFIARM64, "not made, not reported")
		assert.Contains(t, nd.Skipped, Skip{What: PlatformEFIARM64, Reason: filepath.Join(DefaultGrubLibDir, PlatformEFIARM64) + " not installed"})
	}
	// GRUB's modules next to each image, the prefix it asks for.
	for _, f := range []string{"grub/i386-pc/normal.mod", "grub/x86_64-efi/normal.mod", "grub/x86_64-efi/http.mod"} {
		_, err := os.Stat(filepath.Join(dir, f))
		assert.NoError(t, err, f)
	}
	assert.Equal(t, "grub/x86_64-efi/core-http.efi", nd.HTTPBootImage)
	assert.Equal(t, "10.0.0.5:8080", nd.HTTPHost)
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(nd.HTTPBootImage)))
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(b, []byte("MZ")), "PE/COFF header")
	assert.Contains(t, string(b), "set prefix=(http,10.0.0.5:8080)/grub")
	_, err = os.Stat(filepath.Join(dir, "grub", "grub.cfg"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the first stage is generated, not written")
}

// TestMakeNetDirSkips: a platform without modules is skipped and reported,
// so is the HTTP-boot image without a host or without x86_64-efi; nothing
// to make at all is ErrNoGRUB; a bad option fails before anything runs.
func TestMakeNetDirSkips(t *testing.T) {
	needGRUBNetDir(t)
	ctx := context.Background()
	// A GRUB library with the BIOS platform only.
	lib := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(DefaultGrubLibDir, PlatformBIOS), filepath.Join(lib, PlatformBIOS)))
	dir := t.TempDir()
	nd, err := MakeNetDir(ctx, dir, NetDirOptions{GrubLibDir: lib, HTTPHost: "deploy.lab"})
	require.NoError(t, err)
	assert.Equal(t, []string{PlatformBIOS}, nd.Made)
	assert.Equal(t, []Skip{
		{What: PlatformEFIx64, Reason: filepath.Join(lib, PlatformEFIx64) + " not installed"},
		{What: PlatformEFIARM64, Reason: filepath.Join(lib, PlatformEFIARM64) + " not installed"},
		{What: "UEFI HTTP boot image", Reason: "x86_64-efi not made"},
	}, nd.Skipped)
	assert.Equal(t, map[dhcpsrv.Arch]string{dhcpsrv.ArchBIOS: "grub/i386-pc/core.0"}, nd.BootFiles)
	assert.Empty(t, nd.HTTPBootImage)

	// x86_64-efi alone, a host without port: port 80.
	nd, err = MakeNetDir(ctx, t.TempDir(), NetDirOptions{Platforms: []string{PlatformEFIx64}, HTTPHost: "deploy.lab"})
	require.NoError(t, err)
	assert.Equal(t, []string{PlatformEFIx64}, nd.Made)
	assert.Empty(t, nd.Skipped)
	assert.Equal(t, "deploy.lab:80", nd.HTTPHost)
	assert.Contains(t, nd.BootFiles, dhcpsrv.ArchEFIx64HTTP)
	assert.NotContains(t, nd.BootFiles, dhcpsrv.ArchBIOS)

	// No HTTP host: no image, said so.
	nd, err = MakeNetDir(ctx, t.TempDir(), NetDirOptions{Platforms: []string{PlatformEFIx64}})
	require.NoError(t, err)
	assert.Equal(t, []Skip{{What: "UEFI HTTP boot image", Reason: "no HTTP host given"}}, nd.Skipped)
	assert.NotContains(t, nd.BootFiles, dhcpsrv.ArchEFIx64HTTP)

	// Nothing installed.
	_, err = MakeNetDir(ctx, t.TempDir(), NetDirOptions{GrubLibDir: t.TempDir()})
	assert.ErrorIs(t, err, ErrNoGRUB)
	assert.ErrorContains(t, err, "apt-get install")

	// Bad options fail before grub-mknetdir runs.
	empty := t.TempDir()
	for _, o := range []NetDirOptions{{Platforms: []string{"powerpc-ieee1275"}}, {HTTPHost: "a b:80"}, {HTTPHost: "h:0"}} {
		_, err = MakeNetDir(ctx, empty, o)
		assert.ErrorIs(t, err, ErrBadOption, "%+v", o)
	}
	ents, err := os.ReadDir(empty)
	require.NoError(t, err)
	assert.Empty(t, ents)
	assert.False(t, errors.Is(err, ErrNoGRUB))
}
