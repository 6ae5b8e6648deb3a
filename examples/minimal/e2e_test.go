//go:build linux

package main_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/internal/e2e"
	"github.com/metalboot/metalboot/internal/netns"
)

// TestE2EMinimalBoots boots a real UEFI machine (OVMF with its own PXE
// client) through examples/minimal alone, inside a network namespace:
// DHCP → GRUB over TFTP → /grub → kernel and initrd from /assets/ →
// /ignition, which the initrd prints on the serial console. The config
// must be the machine's own (its hostname and MAC).
func TestE2EMinimalBoots(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: boots a QEMU machine; skipped with -short")
	}
	assets := e2e.Prepare(t, func(ctx context.Context, dir string) (e2e.BootFiles, error) {
		nd, err := grubcfg.MakeNetDir(ctx, dir, grubcfg.NetDirOptions{Platforms: []string{grubcfg.PlatformBIOS, grubcfg.PlatformEFIx64}})
		if err != nil {
			return e2e.BootFiles{}, err
		}
		return e2e.BootFiles{BIOS: nd.BootFiles[dhcpsrv.ArchBIOS], EFI: nd.BootFiles[dhcpsrv.ArchEFIx64]}, nil
	})
	lab := e2e.NewLab(t)
	netns.Need(t, "go")
	bin := filepath.Join(t.TempDir(), "minimal")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/minimal: %v\n%s", err, out)
	}
	m := e2e.DefaultMachines()[0] // UEFI, OVMF's own PXE
	data := filepath.Join(t.TempDir(), "data")
	if err := e2e.WriteDataDir(data, []e2e.Machine{m}); err != nil {
		t.Fatal(err)
	}
	server := lab.Start("minimal", bin, "-data", data, "-assets", assets.Dir, "-tftp-root", assets.TFTPRoot,
		"-interface", e2e.BridgeName, "-server-ip", e2e.ServerIP, "-subnet", "10.99.0.0/24", "-range", "10.99.0.100-10.99.0.200")
	var vms []*e2e.VM
	e2e.DumpOnFailure(t, func() []*e2e.VM { return vms }, server)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// /grub without a MAC is a 400: the server is up.
	if err := e2e.WaitHTTP(ctx, lab.HTTPClient(), "http://"+e2e.ServerIP+":8080/assets/vmlinuz"); err != nil {
		t.Fatalf("minimal did not come up: %v", err)
	}

	lab.Tap("tapmin")
	cfg := m.VMConfig()
	cfg.Tap, cfg.Dir, cfg.Timeout = "tapmin", lab.Dir, 150*time.Second
	vm := e2e.StartVM(t, lab.NS, cfg)
	vms = append(vms, vm)
	bctx, bcancel := context.WithTimeout(context.Background(), 140*time.Second)
	defer bcancel()
	r := e2e.WaitBoot(bctx, vm)[0]
	if r.Err != nil {
		t.Fatalf("%s: %v", m.Name, r.Err)
	}
	t.Logf("%s (%s): power-on → Ignition printed %.1fs", m.Name, m.Firmware, r.Printed.Seconds())
	for path, want := range map[string]string{
		"/etc/hostname":      m.Hostname,
		"/etc/metalboot-e2e": "mac=" + m.MAC.String() + " base=http://" + e2e.ServerIP + ":8080",
	} {
		if got, err := e2e.IgnitionFile(r.Ignition, path); err != nil || got != want {
			t.Errorf("printed config: file %s = %q (%v), want %q", path, got, err, want)
		}
	}
	// The config went to the lease holder only: the server's own address
	// (not the machine's) is refused.
	resp, err := lab.HTTPClient().Get("http://" + e2e.ServerIP + ":8080/ignition?mac=" + m.MAC.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("/ignition from another address: %s, want 403", resp.Status)
	}
}
