//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/metalboot/metalboot/grubcfg"
)

// GRUB platform directories of Debian's grub-efi-amd64-bin and grub-pc-bin.
const (
	GrubEFIDir  = "/usr/lib/grub/x86_64-efi"
	GrubBIOSDir = "/usr/lib/grub/i386-pc"
)

// Boot file names relative to a TFTP root made by [MakeTFTPRoot]: what DHCP
// must hand out for UEFI x64 (client arch 7/9) and BIOS (arch 0) clients.
const (
	BootFileEFI  = "grub/x86_64-efi/core.efi"
	BootFileBIOS = "grub/i386-pc/core.0"
)

// MakeTFTPRoot runs grub-mknetdir for x86_64-efi and i386-pc into dir (with
// --subdir=grub), producing [BootFileEFI] and [BootFileBIOS] plus their
// module directories, and grubcfg.HTTPBootImage for UEFI HTTP boot from
// labserver at ServerIP:8080. GRUB's prefix then is (tftp,<server>)/grub, so its
// first-stage config is looked up as grub/grub.cfg-01-<mac>, …,
// grub/grub.cfg. No grub.cfg is written here.
func MakeTFTPRoot(ctx context.Context, dir string) error {
	for _, plat := range []string{GrubEFIDir, GrubBIOSDir} {
		cmd := exec.CommandContext(ctx, "grub-mknetdir", "--net-directory="+dir, "--subdir=grub", "-d", plat)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("e2e: grub-mknetdir -d %s: %v: %s", plat, err, bytes.TrimSpace(out))
		}
	}
	if err := grubcfg.MakeHTTPBootImage(ctx, GrubEFIDir, filepath.Join(dir, filepath.FromSlash(grubcfg.HTTPBootImage)), ServerIP+":8080"); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	for _, f := range []string{BootFileEFI, BootFileBIOS, grubcfg.HTTPBootImage} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("e2e: grub-mknetdir did not produce %s: %w", f, err)
		}
	}
	return nil
}

// FirstStageGrubCfg is a static first-stage grub.cfg, for stand-in servers
// that cannot generate one: serial console on, then the per-machine config
// from http://<httpHostPort>/grub?mac=<MAC>. The echo after configfile shows
// up on the console when the HTTP fetch failed (configfile then returns
// silently).
func FirstStageGrubCfg(httpHostPort string) string {
	return `serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
echo "METALBOOT-GRUB-FIRST-STAGE mac=${net_default_mac} ip=${net_default_ip}"
insmod http
set root=(http,` + httpHostPort + `)
configfile "/grub?mac=${net_default_mac}"
echo "METALBOOT-GRUB-CONFIGFILE-FAILED"
`
}
