package main_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/grubcfg/ipxe"
	"github.com/metalboot/metalboot/internal/e2e"
	"github.com/metalboot/metalboot/internal/netns"
)

// buildLabserver compiles this package into dir with the go command that
// runs the test.
func buildLabserver(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(dir, "labserver")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/labserver: %v\n%s", err, out)
	}
	return bin
}

// makeNetDir makes the TFTP root labserver serves, as an operator does
// with labserver -make-tftp-root: grubcfg.MakeNetDir, with the UEFI
// HTTP-boot image for labserver's address in the lab, and Debian's iPXE
// binaries (ipxe.InstallBinaries; skipped when the ipxe package is
// missing, see needIPXE).
func makeNetDir(ctx context.Context, dir string) (e2e.BootFiles, error) {
	nd, err := grubcfg.MakeNetDir(ctx, dir, grubcfg.NetDirOptions{
		Platforms: []string{grubcfg.PlatformBIOS, grubcfg.PlatformEFIx64},
		HTTPHost:  e2e.ServerIP + ":8080",
	})
	if err != nil {
		return e2e.BootFiles{}, err
	}
	if _, _, err := ipxe.InstallBinaries(dir, ""); err != nil {
		return e2e.BootFiles{}, err
	}
	bf := e2e.BootFiles{BIOS: nd.BootFiles[dhcpsrv.ArchBIOS], EFI: nd.BootFiles[dhcpsrv.ArchEFIx64], HTTP: nd.BootFiles[dhcpsrv.ArchEFIx64HTTP]}
	// The Secure Boot chain, when shim-signed and grub-efi-amd64-signed
	// are installed (TestE2ESecureBoot needs it).
	if sb, err := grubcfg.InstallSecureBoot(dir, grubcfg.SecureBootOptions{}); err == nil {
		bf.Shim = sb.BootFiles[dhcpsrv.ArchEFIx64]
	} else if !errors.Is(err, grubcfg.ErrNoSecureBoot) {
		return e2e.BootFiles{}, err
	}
	return bf, nil
}

// e2eLab is a running labserver with its network, ready for machines.
type e2eLab struct {
	lab    *e2e.Lab
	server *e2e.Process
	assets *e2e.Assets
	vms    []*e2e.VM
}

// startE2ELab prepares the assets, the namespace and the data directory and
// starts labserver inside the namespace with DHCP on the bridge; bootFiles
// is its dhcp.boot_files (nil: GRUB's images).
func startE2ELab(t *testing.T, machines []e2e.Machine, bootFiles map[string]string) *e2eLab {
	t.Helper()
	return startE2ELabWith(t, machines, func(c *e2e.LabserverConfig) { c.BootFiles = bootFiles })
}

// startE2ELabWith is startE2ELab with lab.yaml's settings changed by
// configure (data, assets and paths are set before it runs).
func startE2ELabWith(t *testing.T, machines []e2e.Machine, configure func(*e2e.LabserverConfig)) *e2eLab {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: boots QEMU machines; skipped with -short")
	}
	assets := e2e.Prepare(t, tftpRootFor(t, machines))
	addARM64Assets(t, assets, machines)
	lab := e2e.NewLab(t)
	// METALBOOT_E2E_IPV6 says what answers iPXE's IPv6 router
	// solicitations, to compare boot times (internal/bench/README.md):
	// "" labserver itself (what a lab gets), "router" a router on the
	// segment (labserver falls silent), "none" nobody (iPXE waits).
	mode := os.Getenv("METALBOOT_E2E_IPV6")
	switch mode {
	case "":
	case "router":
		lab.SendRouterAdvertisements()
	case "none":
	default:
		t.Fatalf("METALBOOT_E2E_IPV6=%q: want router or none", mode)
	}
	netns.Need(t, "go")
	bin := buildLabserver(t, t.TempDir())

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := e2e.WriteDataDir(data, machines); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "lab.yaml")
	lc := e2e.LabserverConfig{
		Data: data, Assets: assets.Dir, TFTPRoot: assets.TFTPRoot, State: filepath.Join(dir, "state"),
		KeepIPv6Wait: mode == "none",
	}
	configure(&lc)
	yaml := e2e.LabserverYAML(lc)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &e2eLab{lab: lab, assets: assets}
	l.server = lab.Start("labserver", bin, "-config", cfg, "-log-level", "debug")
	e2e.DumpOnFailure(t, func() []*e2e.VM { return l.vms }, l.server)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := e2e.WaitHTTP(ctx, lab.HTTPClient(), "http://"+e2e.ServerIP+":8080/healthz"); err != nil {
		t.Fatalf("labserver did not come up: %v", err)
	}
	return l
}

// boot powers on the machines concurrently and waits until each printed its
// Ignition config and powered off.
func (l *e2eLab) boot(t *testing.T, round string, machines ...e2e.Machine) []e2e.BootResult {
	t.Helper()
	var vms []*e2e.VM
	for _, m := range machines {
		tap := "tap" + m.Name + round
		l.lab.Tap(tap)
		cfg := m.VMConfig()
		cfg.Name, cfg.Tap, cfg.Dir, cfg.Timeout = m.Name+round, tap, l.lab.Dir, 150*time.Second
		vm := e2e.StartVM(t, l.lab.NS, cfg)
		vms = append(vms, vm)
		l.vms = append(l.vms, vm)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 140*time.Second)
	defer cancel()
	res := e2e.WaitBoot(ctx, vms...)
	for i, r := range res {
		m := machines[i]
		if r.Err != nil {
			t.Errorf("%s (%s, %s): %v", m.Name, m.Firmware, m.MAC, r.Err)
			continue
		}
		t.Logf("%s%s (%s, profile %s): power-on → Ignition printed %.1fs, → powered off %.1fs",
			m.Name, round, m.Firmware, m.ProfileName(), r.Printed.Seconds(), r.Exited.Seconds())
	}
	return res
}

// checkIgnition checks that each machine printed, byte for byte, what
// labserver serves at /ignition?mac=<MAC> (fetched by the test after the
// timeline was read, so this fetch cannot stand in for the machine's), and
// that the config carries the machine's own hostname and MAC.
func (l *e2eLab) checkIgnition(t *testing.T, res []e2e.BootResult, machines ...e2e.Machine) {
	t.Helper()
	client := l.lab.HTTPClient()
	for i, r := range res {
		m := machines[i]
		if r.Err != nil {
			continue
		}
		url := "http://" + e2e.ServerIP + ":8080/ignition?mac=" + m.MAC.String()
		resp, err := client.Get(url)
		if err != nil {
			t.Errorf("GET %s: %v", url, err)
			continue
		}
		want, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("GET %s: %s %v", url, resp.Status, err)
			continue
		}
		if got := strings.TrimSpace(r.Ignition); got != strings.TrimSpace(string(want)) {
			t.Errorf("%s printed\n%s\nbut /ignition?mac=%s serves\n%s", m.Name, got, m.MAC, want)
		}
		if !strings.Contains(r.Ignition, `"version":"3.`) {
			t.Errorf("%s: printed config is not Ignition 3.x:\n%s", m.Name, r.Ignition)
		}
		for path, want := range map[string]string{
			"/etc/hostname":      m.Hostname,
			"/etc/metalboot-e2e": "mac=" + m.MAC.String() + " base=http://" + e2e.ServerIP + ":8080",
		} {
			if got, err := e2e.IgnitionFile(r.Ignition, path); err != nil || got != want {
				t.Errorf("%s: printed config: file %s = %q (%v), want %q", m.Name, path, got, err, want)
			}
		}
	}
}

// checkTimeline asserts /machines?format=json shows every stage for every
// machine, counting only events since the given time, and returns the
// address each machine fetched /grub from.
func (l *e2eLab) checkTimeline(t *testing.T, since time.Time, machines ...e2e.Machine) map[string]string {
	t.Helper()
	ms, raw, err := e2e.FetchTimeline(l.lab.HTTPClient(), "http://"+e2e.ServerIP+":8080/machines?format=json")
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	bad := false
	for _, m := range machines {
		for _, p := range e2e.CheckTimelineSince(ms, m, l.assets.BootFiles, since) {
			t.Errorf("/machines: %s", p)
			bad = true
		}
	}
	if bad || testing.Verbose() {
		t.Logf("/machines timeline:\n%s", e2e.FormatTimeline(ms))
	}
	grubIP := map[string]string{}
	for _, r := range ms {
		for _, e := range r.Events {
			if (e.Stage == e2e.StageGrub || e.Stage == e2e.StageIPXE) && !e.Time.Before(since) {
				grubIP[r.MAC] = e.IP
			}
		}
	}
	return grubIP
}

// TestE2EFirmwareBoot is the end-to-end proof with real firmware: inside a
// network namespace, labserver serves DHCP, TFTP and HTTP on a bridge; one
// UEFI (OVMF, q35) and one BIOS (SeaBIOS, pc) QEMU machine power on
// concurrently, get a lease, fetch GRUB over TFTP, fetch /grub?mac=<MAC>,
// load the Debian cloud kernel and a busybox initrd over HTTP, and the
// initrd fetches /ignition?mac=<MAC> and prints it on the serial console.
// /machines must then show every stage for both MACs.
//
// Then both machines boot again at once. GRUB 2.06 connects from the same
// TCP source port (21550) on every boot and a machine gets its address
// again, so the second boot presents the 4-tuple of the first boot's
// connection; a server that leaves that connection in TIME_WAIT makes the
// second boot's /grub fetch fail.
//
// The UEFI and BIOS machines boot the profile in the form of matchbox's
// Fedora CoreOS profiles (initrd "--name main …", argument initrd=main),
// which GRUB must boot on both platforms; the HTTP-boot machine the plain
// one.
func TestE2EFirmwareBoot(t *testing.T) {
	machines := e2e.DefaultMachines()
	for i := range machines {
		machines[i].Profile = e2e.ProfileNamedID
	}
	httpBoot := e2e.HTTPBootMachine()
	l := startE2ELab(t, append(slices.Clone(machines), httpBoot), nil)
	// Same MAC, same address: the second boot's GRUB reused the first
	// boot's TCP 4-tuple.
	l.bootTwice(t, machines, "/grub", ": the 4-tuple was not reused, the test proves nothing", nil)
	// UEFI HTTP boot: OVMF with its PXE options off asks DHCP as an
	// "HTTPClient" and gets a URL; GRUB then comes from /grub/ over HTTP.
	l.bootOnce(t, "uefi-http-boot", httpBoot, nil)
	// A machine no group matches: /grub answers 404, and GRUB (which runs
	// the body of any answer) prints the reason on the console.
	t.Run("unknown-machine", func(t *testing.T) {
		l.lab.Tap("tapunknown")
		vm := e2e.StartVM(t, l.lab.NS, e2e.VMConfig{Name: "unknown", Firmware: e2e.BIOS,
			MAC: hwaddr.MustParse("52:54:00:99:00:09"), Tap: "tapunknown", Dir: l.lab.Dir, Timeout: 150 * time.Second})
		l.vms = append(l.vms, vm)
		ctx, cancel := context.WithTimeout(context.Background(), 140*time.Second)
		defer cancel()
		const want = "metalboot: /grub answered 404 Not Found: "
		if _, err := vm.WaitFor(ctx, want); err != nil {
			t.Fatalf("console never showed %q: %v", want, err)
		}
		vm.Stop()
		i := strings.Index(vm.Serial(), want)
		t.Logf("console: %s", strings.SplitN(vm.Serial()[i:], "\n", 2)[0])
	})
	checkTFTPLog(t, l.server.Log)
}

// TestE2EIPXEBoot boots, through labserver alone, machines whose groups
// say boot_loader "ipxe" (the lab's default stays GRUB), twice in a row:
// one SeaBIOS machine whose NIC option ROM is iPXE and one OVMF machine
// running the NIC's iPXE EFI driver, which DHCP hands /boot.ipxe at once,
// and one OVMF machine with OVMF's own PXE, which DHCP hands Debian's
// ipxe.efi over TFTP and then, as iPXE, /boot.ipxe (no chainload loop).
// boot.ipxe reports each machine's attributes to /ipxe, whose script
// loads the kernel and the initrd, which fetches /ignition?mac=<MAC> and
// prints it. The BIOS and the chainloading machine boot the profile with
// matchbox's --name initrd form, the other UEFI machine the plain profile,
// which has no initrd= argument: UEFI iPXE hands the initrd to the kernel
// only by name, so without the one /ipxe adds, its kernel would panic
// ("Unable to mount root fs"). /machines must show every stage, iPXE's
// included.
func TestE2EIPXEBoot(t *testing.T) {
	if _, err := os.Stat(filepath.Join(ipxe.DebianDir, "ipxe.efi")); err != nil {
		t.Skipf("e2e: %v (apt-get install ipxe)", err)
	}
	machines := e2e.IPXEMachines()
	l := startE2ELab(t, machines, nil)
	l.bootTwice(t, machines, "/ipxe", "", func(t *testing.T, res []e2e.BootResult) {
		for i, r := range res {
			console := e2e.StripANSI(r.VM.Serial())
			for _, want := range []string{"metalboot: machine " + machines[i].MAC.String(), "metalboot: loading initrd"} {
				if !strings.Contains(console, want) {
					t.Errorf("%s: the console never showed %q (the /ipxe script's echo)", machines[i].Name, want)
				}
			}
		}
	})
}

// bootOnce boots machine m once, in subtest name: it must go through every
// stage and print its own Ignition config; then check (when not nil) looks
// at the result.
func (l *e2eLab) bootOnce(t *testing.T, name string, m e2e.Machine, check func(*testing.T, e2e.BootResult)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		start := time.Now()
		res := l.boot(t, "1", m)
		if t.Failed() {
			t.FailNow()
		}
		l.checkTimeline(t, start, m)
		l.checkIgnition(t, res, m)
		if check != nil {
			check(t, res[0])
		}
	})
}

// bootTwice boots the machines twice in a row (subtests first-boot and
// same-MACs-again): each boot, on its own, must go through every stage and
// print the machine's own Ignition config, then check (when not nil) looks
// at the results; the second boot must fetch its config (path) from the
// address of the first (why it matters is said after the addresses).
func (l *e2eLab) bootTwice(t *testing.T, machines []e2e.Machine, path, why string, check func(*testing.T, []e2e.BootResult)) {
	t.Helper()
	var firstIP map[string]string
	for _, round := range []string{"1", "2"} {
		name := map[string]string{"1": "first-boot", "2": "same-MACs-again"}[round]
		ok := t.Run(name, func(t *testing.T) {
			start := time.Now()
			res := l.boot(t, round, machines...)
			if t.Failed() {
				t.FailNow()
			}
			ips := l.checkTimeline(t, start, machines...)
			l.checkIgnition(t, res, machines...)
			if check != nil {
				check(t, res)
			}
			if firstIP == nil {
				firstIP = ips
				return
			}
			for _, m := range machines {
				if mac := m.MAC.String(); ips[mac] == "" || ips[mac] != firstIP[mac] {
					t.Errorf("%s fetched %s from %q, first boot from %q%s", mac, path, ips[mac], firstIP[mac], why)
				}
			}
		})
		if !ok {
			break
		}
	}
}

// checkTFTPLog reads labserver's debug log: every TFTP transfer the firmware
// and GRUB started must have ended well (completed, not found, or ended by
// the client after reading tsize), and the boot images must have gone out
// with blocks in flight (send-ahead or windowsize), which is what the real
// firmware is proven to take. The transfers of the boot images are logged.
func checkTFTPLog(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sent, windowed := 0, 0
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(line, `msg="tftp: transfer failed"`), strings.Contains(line, `msg="tftp: request failed"`):
			t.Errorf("TFTP: %s", line)
		case strings.Contains(line, `msg="tftp: sent"`):
			if strings.Contains(line, "core.") || strings.Contains(line, "normal.mod") {
				t.Logf("TFTP: %s", line[strings.Index(line, "file="):])
			}
			sent++
			if !strings.Contains(line, " window=1 ") {
				windowed++
			}
		}
	}
	if sent > 0 && windowed == 0 {
		t.Errorf("no TFTP transfer in %s was sent with a window > 1", path)
	}
}
