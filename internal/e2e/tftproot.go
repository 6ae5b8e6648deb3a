//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// GRUB platform directories of Debian's grub-efi-amd64-bin and grub-pc-bin:
// [Prepare] skips the test when they are missing.
const (
	GrubEFIDir  = "/usr/lib/grub/x86_64-efi"
	GrubBIOSDir = "/usr/lib/grub/i386-pc"
)

// BootFiles are the GRUB network images of a TFTP root as DHCP hands them
// out: slash-separated paths relative to the root. GRUB's prefix is their
// directory's parent ((tftp,<server>)/grub for grub/<platform>/core.*), so
// it asks for its first stage as grub/grub.cfg-01-<mac>, …, grub/grub.cfg.
type BootFiles struct {
	// BIOS is the image for BIOS PXE (client architecture 0), e.g.
	// grub/i386-pc/core.0.
	BIOS string
	// EFI is the image for UEFI x86-64 (client architectures 7 and 9),
	// e.g. grub/x86_64-efi/core.efi.
	EFI string
	// HTTP is the image for UEFI HTTP boot (client architecture 16); the
	// firmware fetches it from the HTTP server at "/"+HTTP (labserver
	// serves the TFTP root under /grub/). Empty: no HTTP-boot image.
	HTTP string
	// ARM64 is the image for UEFI ARM64 (client architecture 11), e.g.
	// grub/arm64-efi/core.efi; ARM64HTTP the one for ARM64 UEFI HTTP
	// boot (19). Empty: none (no ARM64 machines).
	ARM64, ARM64HTTP string
	// Shim is the Secure Boot first stage (shim, next to the signed GRUB
	// it loads) for UEFI x86-64 machines with Secure Boot. Empty: no
	// Secure Boot chain.
	Shim string
}

// For returns the boot file machine m's firmware fetches.
func (b BootFiles) For(m Machine) string {
	switch {
	case m.Firmware == ARM64 && m.HTTPBoot:
		return b.ARM64HTTP
	case m.Firmware == ARM64:
		return b.ARM64
	case m.SecureBoot && !m.Unsigned:
		return b.Shim
	case m.HTTPBoot:
		return b.HTTP
	case m.Firmware == UEFI:
		return b.EFI
	}
	return b.BIOS
}

// TFTPRootFunc makes the TFTP root in dir (an empty directory) and
// returns its boot files. metalboot's tests pass a function that calls
// grubcfg.MakeNetDir (for an HTTP-boot image that reads from
// ServerIP:8080): this package imports nothing above internal/, and GRUB's
// images are made in one place.
type TFTPRootFunc func(ctx context.Context, dir string) (BootFiles, error)

// checkBootFiles reports a boot file that is not a regular file in root.
func checkBootFiles(root string, b BootFiles) error {
	for _, x := range []struct{ what, file string }{{"BIOS", b.BIOS}, {"UEFI", b.EFI}, {"HTTP boot", b.HTTP}, {"ARM64", b.ARM64}, {"ARM64 HTTP boot", b.ARM64HTTP}, {"Secure Boot", b.Shim}} {
		what, f := x.what, x.file
		if f == "" && what != "BIOS" && what != "UEFI" {
			continue
		}
		if f == "" {
			return fmt.Errorf("e2e: TFTP root %s has no %s boot file", root, what)
		}
		st, err := os.Stat(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return fmt.Errorf("e2e: %s boot file: %w", what, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("e2e: %s boot file %s is not a regular file", what, f)
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
