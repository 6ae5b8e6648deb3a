package main_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/e2e"
)

// TestE2ESecureBoot proves the Secure Boot chain with real firmware:
// OVMF's Secure Boot build with Microsoft's keys enrolled boots, through
// labserver alone (lab.yaml secure_boot: true), DHCP → shim (signed by
// Microsoft's UEFI CA) → Debian's signed GRUB (no http: it falls back to
// TFTP for its per-machine config) → the signed Debian kernel over TFTP →
// the initrd, which prints the SecureBoot EFI variable (it must be on)
// and its Ignition config, twice with the same MAC.
//
// Then a machine whose group says secure_boot false gets the unsigned
// GRUB image (grub-mknetdir's core.efi) from DHCP, and the same firmware
// refuses to run it; and a machine on the shim chain whose profile boots
// the same kernel without its signature is refused by the signed GRUB
// (shim's verification): enforcement at both ends of the chain.
func TestE2ESecureBoot(t *testing.T) {
	e2e.NeedSecureBoot(t)
	sb := e2e.Machine{Name: "sb", Firmware: e2e.UEFI, MAC: hwaddr.MustParse("52:54:00:99:00:31"), Hostname: "sb.lab", SecureBoot: true, OVMFPXE: true}
	unsigned := e2e.Machine{Name: "sbunsigned", Firmware: e2e.UEFI, MAC: hwaddr.MustParse("52:54:00:99:00:32"), Hostname: "sbunsigned.lab",
		SecureBoot: true, OVMFPXE: true, Unsigned: true}
	// On the shim chain, but its profile's kernel has lost its signature.
	badKernel := e2e.Machine{Name: "sbkernel", Firmware: e2e.UEFI, MAC: hwaddr.MustParse("52:54:00:99:00:33"), Hostname: "sbkernel.lab",
		SecureBoot: true, OVMFPXE: true, Profile: "e2e-unsigned-kernel"}
	l := startE2ELabWith(t, []e2e.Machine{sb, unsigned, badKernel}, func(c *e2e.LabserverConfig) {
		c.SecureBoot = true
		writeUnsignedKernelProfile(t, c.Data, c.Assets, badKernel.Profile)
	})
	if l.assets.BootFiles.Shim == "" {
		if os.Getenv("METALBOOT_E2E_REQUIRE") != "" {
			t.Fatal("e2e: no Secure Boot chain in the TFTP root (apt-get install shim-signed grub-efi-amd64-signed)")
		}
		t.Skip("e2e: shim-signed or grub-efi-amd64-signed not installed")
	}

	l.bootTwice(t, []e2e.Machine{sb}, "its config", "", func(t *testing.T, res []e2e.BootResult) {
		for _, r := range res {
			console := r.VM.Serial()
			on, line, err := e2e.SecureBootState(console)
			if err != nil {
				t.Fatalf("%s: %v", sb.Name, err)
			}
			if !on {
				t.Fatalf("%s: Secure Boot is off in the booted kernel: %s", sb.Name, line)
			}
			t.Logf("%s: initrd printed %q", sb.Name, line)
			plain := e2e.StripANSI(console)
			for _, want := range []string{
				"metalboot: loading (tftp)/grub?mac=",      // the first stage's TFTP fallback ran
				"metalboot: loading kernel (tftp)/assets/", // the per-machine config over TFTP
			} {
				if !strings.Contains(plain, want) {
					t.Errorf("%s: the console never showed %q", sb.Name, want)
				}
			}
			if strings.Contains(plain, "metalboot: loading http://") {
				t.Errorf("%s: the signed GRUB took the http branch of the first stage", sb.Name)
			}
		}
		// Every fetch went over TFTP: the timeline's kernel and initrd
		// events are TFTP transfers of the assets tree.
		ms, raw, err := e2e.FetchTimeline(l.lab.HTTPClient(), "http://"+e2e.ServerIP+":8080/machines?format=json")
		if err != nil {
			t.Fatalf("%v\n%s", err, raw)
		}
		for _, m := range ms {
			if m.MAC != sb.MAC.String() {
				continue
			}
			for _, e := range m.Events {
				if (e.Stage == e2e.StageKernel || e.Stage == e2e.StageInitrd) && !strings.HasSuffix(e.Detail, "(tftp)") {
					t.Errorf("%s: %s fetched otherwise than over TFTP: %s", sb.Name, e.Stage, e.Detail)
				}
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("unsigned-grub-refused", func(t *testing.T) {
		vm := l.startOne(t, unsigned)
		ctx, cancel := context.WithTimeout(context.Background(), 140*time.Second)
		defer cancel()
		// OVMF's boot manager: 'BdsDxe: failed to load Boot0001 "UEFI
		// PXEv4 (MAC:…)" from …: Access Denied'.
		const want = "Access Denied"
		took, err := vm.WaitConsole(ctx, func(c string) bool { return strings.Contains(c, want) })
		if err != nil {
			t.Fatalf("the firmware never refused the unsigned GRUB (%q): %v", want, err)
		}
		console := e2e.StripANSI(vm.Serial())
		vm.Stop()
		i := strings.Index(console, want)
		start := strings.LastIndex(console[:i], "\n") + 1
		t.Logf("refused after %.1fs: %s", took.Seconds(), strings.TrimSpace(console[start:i+len(want)]))
		if strings.Contains(console, "GNU GRUB") || strings.Contains(console, "metalboot: ") {
			t.Errorf("the unsigned GRUB ran under Secure Boot")
		}
		// It was DHCP's choice, for this machine: the unsigned image went
		// out over TFTP, and then nothing else.
		ms, raw, err := e2e.FetchTimeline(l.lab.HTTPClient(), "http://"+e2e.ServerIP+":8080/machines?format=json")
		if err != nil {
			t.Fatalf("%v\n%s", err, raw)
		}
		var got []string
		for _, m := range ms {
			if m.MAC == unsigned.MAC.String() {
				for _, e := range m.Events {
					got = append(got, e.Stage+" "+e.Detail)
				}
			}
		}
		joined := strings.Join(got, "\n")
		if !strings.Contains(joined, l.assets.BootFiles.EFI) || strings.Contains(joined, "shimx64.efi") {
			t.Errorf("%s: want DHCP and TFTP to hand it %s, not shim; timeline:\n%s", unsigned.Name, l.assets.BootFiles.EFI, joined)
		}
	})

	t.Run("unsigned-kernel-refused", func(t *testing.T) {
		vm := l.startOne(t, badKernel)
		ctx, cancel := context.WithTimeout(context.Background(), 140*time.Second)
		defer cancel()
		// Debian's GRUB asks shim to verify the kernel (shim_lock).
		const want = "bad shim signature"
		took, err := vm.WaitConsole(ctx, func(c string) bool { return strings.Contains(c, want) })
		if err != nil {
			t.Fatalf("GRUB never refused the unsigned kernel (%q): %v", want, err)
		}
		// Whatever GRUB does next, the kernel must not start.
		time.Sleep(5 * time.Second)
		console := e2e.StripANSI(vm.Serial())
		vm.Stop()
		if strings.Contains(console, e2e.MarkerInitStart) || strings.Contains(console, "Linux version") {
			t.Errorf("the unsigned kernel ran under Secure Boot")
		}
		if !strings.Contains(console, "metalboot: loading kernel (tftp)/assets/vmlinuz-unsigned") {
			t.Errorf("GRUB did not get as far as loading the kernel")
		}
		i := strings.Index(console, want)
		start := strings.LastIndex(console[:i], "\n") + 1
		t.Logf("refused after %.1fs: %s", took.Seconds(), strings.TrimSpace(console[start:i+len(want)]))
	})
	checkTFTPLog(t, l.server.Log)
}

// startOne powers on one machine of the lab on its own tap.
func (l *e2eLab) startOne(t *testing.T, m e2e.Machine) *e2e.VM {
	t.Helper()
	l.lab.Tap("tap" + m.Name)
	cfg := m.VMConfig()
	cfg.Tap, cfg.Dir, cfg.Timeout = "tap"+m.Name, l.lab.Dir, 150*time.Second
	vm := e2e.StartVM(t, l.lab.NS, cfg)
	l.vms = append(l.vms, vm)
	return vm
}

// writeUnsignedKernelProfile puts the e2e kernel without its signature
// into assets as vmlinuz-unsigned and a profile id that boots it (with
// the e2e initrd) into the data directory.
func writeUnsignedKernelProfile(t *testing.T, data, assets, id string) {
	t.Helper()
	if err := e2e.StripSignature(filepath.Join(assets, "vmlinuz"), filepath.Join(assets, "vmlinuz-unsigned")); err != nil {
		t.Fatal(err)
	}
	p := `{"id": "` + id + `", "name": "the e2e kernel without its signature",
	"boot": {"kernel": "/assets/vmlinuz-unsigned", "initrd": ["/assets/initrd.cpio"],
		"args": ["` + e2e.IgnitionParam + `={{.BaseURL}}/ignition?mac={{.MAC}}", "console=ttyS0"]},
	"ignition_id": "` + e2e.IgnitionTemplate + `"}`
	if err := os.WriteFile(filepath.Join(data, "profiles", id+".json"), []byte(p), 0o644); err != nil {
		t.Fatal(err)
	}
}
