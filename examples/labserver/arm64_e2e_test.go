package main_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/internal/e2e"
)

// hasARM64 reports whether any machine is an ARM64 one.
func hasARM64(machines []e2e.Machine) bool {
	return slices.ContainsFunc(machines, func(m e2e.Machine) bool { return m.Firmware == e2e.ARM64 })
}

// tftpRootFor is the TFTP root of a lab with these machines: makeNetDir's
// x86 tree, and with ARM64 machines also the arm64-efi tree and its
// HTTP-boot image, made from Debian's grub-efi-arm64-bin unpacked in the
// e2e cache, as an operator does with labserver -make-tftp-root -grub-dir
// arm64-efi=DIR (grubcfg.NetDirOptions.PlatformDirs).
func tftpRootFor(t *testing.T, machines []e2e.Machine) e2e.TFTPRootFunc {
	t.Helper()
	if !hasARM64(machines) {
		return makeNetDir
	}
	p := e2e.NeedARM64Packages(t)
	return func(ctx context.Context, dir string) (e2e.BootFiles, error) {
		nd, err := grubcfg.MakeNetDir(ctx, dir, grubcfg.NetDirOptions{
			Platforms:    []string{grubcfg.PlatformBIOS, grubcfg.PlatformEFIx64, grubcfg.PlatformEFIARM64},
			PlatformDirs: map[string]string{grubcfg.PlatformEFIARM64: p.GrubDir},
			HTTPHost:     e2e.ServerIP + ":8080",
		})
		if err != nil {
			return e2e.BootFiles{}, err
		}
		return e2e.BootFiles{BIOS: nd.BootFiles[dhcpsrv.ArchBIOS], EFI: nd.BootFiles[dhcpsrv.ArchEFIx64], HTTP: nd.BootFiles[dhcpsrv.ArchEFIx64HTTP],
			ARM64: nd.BootFiles[dhcpsrv.ArchEFIARM64], ARM64HTTP: nd.BootFiles[dhcpsrv.ArchEFIARM64HTTP]}, nil
	}
}

// addARM64Assets puts the ARM64 kernel and initrd under /assets/arm64/
// when there are ARM64 machines.
func addARM64Assets(t *testing.T, a *e2e.Assets, machines []e2e.Machine) {
	t.Helper()
	if !hasARM64(machines) {
		return
	}
	if _, err := e2e.WriteARM64Assets(a.Dir, e2e.NeedARM64Packages(t)); err != nil {
		t.Fatal(err)
	}
}

// TestE2EARM64Boot boots UEFI ARM64 machines (AAVMF on QEMU's virt
// machine, a Cortex-A57 under TCG) through labserver alone, inside a
// network namespace: AAVMF's own PXE asks DHCP as client architecture 11
// and gets grub/arm64-efi/core.efi over TFTP; GRUB reads the generated
// first stage, the same as on x86-64, and fetches
// /grub?mac=<MAC>&arch=arm64; the ARM64 kernel (Debian's cloud kernel)
// and an initrd of arm64 busybox and virtio modules come over HTTP; the
// initrd fetches /ignition?mac=<MAC> and prints it. That machine boots
// twice in a row (the same MAC, the same address, GRUB's reused TCP
// 4-tuple), then a second machine boots once with UEFI HTTP boot (AAVMF's
// PXE switched off through fw_cfg, client architecture 19: the ARM64
// core-http.efi over HTTP, no TFTP).
//
// Each machine's MAC also has a group without arch that boots the x86-64
// kernel under another hostname: the machine boots its own kernel only
// because /grub matched arch=arm64 from GRUB's $grub_cpu, and prints its
// own hostname only because /ignition (whose request names no
// architecture) matched the architecture of its DHCP lease.
func TestE2EARM64Boot(t *testing.T) {
	begin := time.Now()
	machines := e2e.ARM64Machines()
	pxe, httpBoot := machines[:1], machines[1]
	l := startE2ELab(t, machines, nil)
	checkArch := func(t *testing.T, res []e2e.BootResult) {
		for i, r := range res {
			m := pxe[i]
			if strings.Contains(r.Ignition, e2e.WrongArchHostname(m)) {
				t.Errorf("%s: /ignition matched the group without arch", m.Name)
			}
			console := e2e.StripANSI(r.VM.Serial())
			if want := "/grub?mac=" + m.MAC.String() + "&arch=arm64"; !strings.Contains(console, want) {
				t.Errorf("%s: the console never showed %q (the first stage's arch=)", m.Name, want)
			}
		}
	}
	l.bootTwice(t, pxe, "/grub", ": the 4-tuple was not reused, the test proves nothing", checkArch)
	l.bootOnce(t, "uefi-http-boot", httpBoot, func(t *testing.T, res e2e.BootResult) {
		console := e2e.StripANSI(res.VM.Serial())
		if want := "/grub?mac=" + httpBoot.MAC.String() + "&arch=arm64"; !strings.Contains(console, want) {
			t.Errorf("%s: the console never showed %q", httpBoot.Name, want)
		}
	})
	checkTFTPLog(t, l.server.Log)
	if os.Getenv("METALBOOT_E2E_TIMES") != "" || testing.Verbose() {
		t.Logf("ARM64 e2e: %.1fs in all (lab set-up and three boots)", time.Since(begin).Seconds())
	}
}
