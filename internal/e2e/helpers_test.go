//go:build linux

package e2e_test

import (
	"context"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/internal/e2e"
)

// netDir is the TFTP root of these tests: grubcfg.MakeNetDir for the x86
// platforms, with the UEFI HTTP-boot image for labserver at ServerIP:8080.
func netDir(ctx context.Context, dir string) (e2e.BootFiles, error) {
	nd, err := grubcfg.MakeNetDir(ctx, dir, grubcfg.NetDirOptions{
		Platforms: []string{grubcfg.PlatformBIOS, grubcfg.PlatformEFIx64},
		HTTPHost:  e2e.ServerIP + ":8080",
	})
	if err != nil {
		return e2e.BootFiles{}, err
	}
	return e2e.BootFiles{BIOS: nd.BootFiles[dhcpsrv.ArchBIOS], EFI: nd.BootFiles[dhcpsrv.ArchEFIx64], HTTP: nd.BootFiles[dhcpsrv.ArchEFIx64HTTP]}, nil
}

// bootFiles are the boot files of such a root, from the one definition of
// the layout (dhcpsrv.DefaultBootFiles).
var bootFiles = func() e2e.BootFiles {
	path := func(a dhcpsrv.Arch) string { p, _ := grubcfg.BootFilePath(a); return p }
	return e2e.BootFiles{BIOS: path(dhcpsrv.ArchBIOS), EFI: path(dhcpsrv.ArchEFIx64), HTTP: path(dhcpsrv.ArchEFIx64HTTP)}
}()
