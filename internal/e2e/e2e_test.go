//go:build linux

package e2e_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/ignition"
	"github.com/metalboot/metalboot/internal/e2e"
	"github.com/metalboot/metalboot/internal/netns"
	"github.com/metalboot/metalboot/profile"
)

func needBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (apt-get install busybox-static)")
	}
}

// TestCPIOWriterBusyboxExtracts checks the newc writer against a real
// reader: busybox cpio lists and extracts what it wrote.
func TestCPIOWriterBusyboxExtracts(t *testing.T) {
	needBusybox(t)
	var buf bytes.Buffer
	c := e2e.NewCPIOWriter(&buf)
	require.NoError(t, c.Dir("bin", 0o755))
	require.NoError(t, c.File("bin/hello", 0o755, []byte("#!/bin/sh\necho hi\n")))
	require.NoError(t, c.File("/etc/odd-len", 0o644, []byte("abc"))) // leading slash dropped, 3-byte body padded
	require.NoError(t, c.Symlink("bin/sh", "busybox"))
	require.NoError(t, c.File("empty", 0o600, nil))
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close twice")
	assert.ErrorIs(t, c.File("late", 0o644, nil), e2e.ErrCPIOClosed)
	assert.Zero(t, buf.Len()%4, "archive is 4-byte aligned")

	list := exec.Command("/bin/busybox", "cpio", "-t")
	list.Stdin = bytes.NewReader(buf.Bytes())
	out, err := list.Output()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, []string{"bin", "bin/hello", "etc/odd-len", "bin/sh", "empty"}, strings.Fields(string(out)))

	dir := t.TempDir()
	x := exec.Command("/bin/busybox", "cpio", "-i", "-d")
	x.Dir = dir
	x.Stdin = bytes.NewReader(buf.Bytes())
	out, err = x.CombinedOutput()
	require.NoError(t, err, "%s", out)
	b, err := os.ReadFile(filepath.Join(dir, "bin/hello"))
	require.NoError(t, err)
	assert.Equal(t, "#!/bin/sh\necho hi\n", string(b))
	b, err = os.ReadFile(filepath.Join(dir, "etc/odd-len"))
	require.NoError(t, err)
	assert.Equal(t, "abc", string(b))
	fi, err := os.Stat(filepath.Join(dir, "bin/hello"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	target, err := os.Readlink(filepath.Join(dir, "bin/sh"))
	require.NoError(t, err)
	assert.Equal(t, "busybox", target)
}

func TestCPIOWriterRejectsBadNames(t *testing.T) {
	var buf bytes.Buffer
	c := e2e.NewCPIOWriter(&buf)
	for _, n := range []string{"", "/", "TRAILER!!!", "/TRAILER!!!"} {
		assert.Error(t, c.File(n, 0o644, nil), "%q", n)
	}
}

// TestBuildInitrd lists the initrd with busybox cpio and runs its /init
// and udhcpc scripts through busybox's shell parser.
func TestBuildInitrd(t *testing.T) {
	needBusybox(t)
	dir := t.TempDir()
	mod := filepath.Join(dir, "virtio_net.ko")
	require.NoError(t, os.WriteFile(mod, []byte("not really a module"), 0o644))
	var buf bytes.Buffer
	require.NoError(t, e2e.BuildInitrd(&buf, e2e.InitrdConfig{Modules: []string{mod, mod}}))

	list := exec.Command("/bin/busybox", "cpio", "-t")
	list.Stdin = bytes.NewReader(buf.Bytes())
	out, err := list.CombinedOutput()
	require.NoError(t, err, "%s", out)
	names := strings.Fields(string(out))
	for _, want := range []string{"init", "bin/busybox", "bin/sh", "bin/udhcpc", "bin/wget", "dev/console",
		"etc/udhcpc.script", "lib/modules/00-virtio_net.ko", "lib/modules/01-virtio_net.ko"} {
		assert.Contains(t, names, want)
	}

	x := exec.Command("/bin/busybox", "cpio", "-i", "-d", "init", "etc/udhcpc.script")
	x.Dir = dir
	x.Stdin = bytes.NewReader(buf.Bytes())
	_, _ = x.CombinedOutput()
	for _, s := range []string{"init", "etc/udhcpc.script"} {
		out, err := exec.Command("/bin/busybox", "sh", "-n", filepath.Join(dir, s)).CombinedOutput()
		assert.NoError(t, err, "%s: %s", s, out)
	}
	init, err := os.ReadFile(filepath.Join(dir, "init"))
	require.NoError(t, err)
	for _, p := range e2e.DefaultURLParams {
		assert.Contains(t, string(init), p)
	}
	for _, m := range []string{e2e.MarkerIgnitionBegin, e2e.MarkerIgnitionEnd, e2e.MarkerError, e2e.MarkerInitStart} {
		assert.Contains(t, string(init), m)
	}
}

// TestUdhcpcScript runs the initrd's udhcpc script with busybox sh inside a
// throw-away network namespace on a veth eth0 (busybox sh runs its own `ip`
// applet whatever PATH says, so the script must never run in the host's
// namespace) and checks the address and route it configured there.
func TestUdhcpcScript(t *testing.T) {
	needBusybox(t)
	ns := netns.New(t)
	ns.IP("link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")
	ns.IP("link", "set", "eth0peer", "up")
	dir := t.TempDir()
	var buf bytes.Buffer
	require.NoError(t, e2e.BuildInitrd(&buf, e2e.InitrdConfig{}))
	x := exec.Command("/bin/busybox", "cpio", "-i", "-d", "etc/udhcpc.script")
	x.Dir = dir
	x.Stdin = bytes.NewReader(buf.Bytes())
	out, err := x.CombinedOutput()
	require.NoError(t, err, "%s", out)
	script := filepath.Join(dir, "etc/udhcpc.script")
	run := func(env ...string) string {
		cmd := ns.Command(context.Background(), "/bin/busybox", "sh", script)
		cmd.Args = append(cmd.Args, env[0])
		cmd.Env = append([]string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}, env[1:]...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	run("deconfig", "interface=eth0")
	out2 := run("bound", "interface=eth0", "ip=10.99.0.123", "mask=24", "router=10.99.0.1 10.99.0.2")
	assert.Contains(t, out2, e2e.MarkerLease+" eth0 10.99.0.123/24")
	addrs, err := exec.Command("ip", "-n", ns.Name, "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	require.NoError(t, err, "%s", addrs)
	assert.Contains(t, string(addrs), "inet 10.99.0.123/24")
	routes, err := exec.Command("ip", "-n", ns.Name, "-4", "route", "show", "default").CombinedOutput()
	require.NoError(t, err, "%s", routes)
	assert.Equal(t, "default via 10.99.0.1 dev eth0", strings.TrimSpace(string(routes)))
	// renew replaces the address instead of adding a second one.
	run("renew", "interface=eth0", "ip=10.99.0.124", "mask=24", "router=10.99.0.1")
	addrs, err = exec.Command("ip", "-n", ns.Name, "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	require.NoError(t, err, "%s", addrs)
	assert.NotContains(t, string(addrs), "10.99.0.123")
	assert.Contains(t, string(addrs), "inet 10.99.0.124/24")
}

func TestExtractIgnition(t *testing.T) {
	serial := "\x1b[2J GRUB stuff\r\nMETALBOOT-INIT-START\r\n" + e2e.MarkerIgnitionBegin + "\r\n{\"ignition\":{\"version\":\"3.4.0\"}}\r\n" +
		e2e.MarkerIgnitionEnd + "\r\nMETALBOOT-POWEROFF\r\n"
	got, ok := e2e.ExtractIgnition(serial)
	assert.True(t, ok)
	assert.Equal(t, `{"ignition":{"version":"3.4.0"}}`, got)
	_, ok = e2e.ExtractIgnition("boot… " + e2e.MarkerIgnitionBegin + "\r\n{\"trunc")
	assert.False(t, ok, "no end marker")
	_, ok = e2e.ExtractIgnition("nothing")
	assert.False(t, ok)
}

func TestStripANSI(t *testing.T) {
	assert.Equal(t, "Booting `x'\nok\n", e2e.StripANSI("\x1b[0m\x1b[30m\x1b[47mBooting `x'\r\n\x1b[1;1Hok\r\n\x1bc"))
	// GRUB's terminfo selects the character set (ESC ( B).
	assert.Equal(t, "@@1[a]@@\n", e2e.StripANSI("\x1b(B\x1b[m@@1[a]@@\r\n"))
}

func TestQEMUArgs(t *testing.T) {
	mac := hwaddr.MustParse("52:54:00:99:00:01")
	uefi := e2e.QEMUArgs(e2e.VMConfig{Firmware: e2e.UEFI, MAC: mac, Tap: "tapx", UseOVMFPXE: true}, "tcg", "/s.log", "/v.fd")
	j := strings.Join(uefi, " ")
	for _, want := range []string{"-machine q35", "-accel tcg", "-no-reboot", "-nodefaults",
		"if=pflash,format=raw,unit=0,readonly=on,file=" + e2e.OVMFCode, "if=pflash,format=raw,unit=1,file=/v.fd",
		"tap,id=n0,ifname=tapx,script=no,downscript=no", "virtio-net-pci,netdev=n0,mac=52:54:00:99:00:01,bootindex=1,romfile=",
		"file,id=ser0,path=/s.log"} {
		assert.Contains(t, j, want)
	}
	bios := strings.Join(e2e.QEMUArgs(e2e.VMConfig{Firmware: e2e.BIOS, MAC: mac, Tap: "tapy"}, "kvm", "/s", ""), " ")
	assert.Contains(t, bios, "-machine pc")
	assert.NotContains(t, bios, "pflash")
	assert.NotContains(t, bios, "romfile")

	// QEMU's user-mode network: no tap; commas in paths escaped.
	user := e2e.QEMUArgs(e2e.VMConfig{Firmware: e2e.UEFI, MAC: mac, UseOVMFPXE: true,
		UserNet: &e2e.UserNet{TFTPRoot: "/t,mp/tftp", BootFile: "grub/x86_64-efi/core.efi"}}, "tcg", "/s.log", "/v.fd")
	j = strings.Join(user, " ")
	assert.Contains(t, j, "-netdev user,id=n0,ipv6=off,tftp=/t,,mp/tftp,bootfile=grub/x86_64-efi/core.efi")
	assert.Contains(t, j, "virtio-net-pci,netdev=n0,mac=52:54:00:99:00:01,bootindex=1,romfile=")
	assert.NotContains(t, j, "tap,")

	// No network: GRUB loaded with -kernel, extra devices last.
	k := e2e.QEMUArgs(e2e.VMConfig{Firmware: e2e.BIOS, Kernel: "/g/grub.lnx", MemoryMB: 128, NoNetwork: true,
		ExtraArgs: []string{"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"}}, "tcg", "/s", "")
	j = strings.Join(k, " ")
	assert.Contains(t, j, "-kernel /g/grub.lnx")
	assert.Contains(t, j, "-m 128 ")
	assert.NotContains(t, j, "-netdev")
	assert.NotContains(t, j, "virtio-net")
	assert.Equal(t, []string{"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"}, k[len(k)-2:])
}

func TestFirstStageGrubCfg(t *testing.T) {
	cfg := e2e.FirstStageGrubCfg("10.99.0.1:8080")
	assert.Contains(t, cfg, `set root=(http,10.99.0.1:8080)`)
	assert.Contains(t, cfg, `configfile "/grub?mac=${net_default_mac}"`)
	if _, err := exec.LookPath("grub-script-check"); err != nil {
		t.Skip("grub-script-check not installed (apt-get install grub-common)")
	}
	cmd := exec.Command("grub-script-check")
	cmd.Stdin = strings.NewReader(cfg)
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "%s", out)
}

// TestDataDirLoads loads the data directory the labserver test writes with
// the real inventory loader and template checker.
func TestDataDirLoads(t *testing.T) {
	dir := t.TempDir()
	ms := e2e.DefaultMachines()
	require.NoError(t, e2e.WriteDataDir(dir, ms))
	inv, err := profile.LoadFS(os.DirFS(dir))
	require.NoError(t, err)
	assert.Empty(t, inv.Warnings())
	require.NoError(t, ignition.Check(inv))
	for _, m := range ms {
		g, p, err := inv.Match(map[string]string{"mac": m.MAC.String()})
		require.NoError(t, err)
		assert.Equal(t, "e2e-"+m.Name, g.ID)
		assert.Equal(t, e2e.ProfileID, p.ID)
	}
}

func TestLabserverYAML(t *testing.T) {
	y := e2e.LabserverYAML(e2e.LabserverConfig{Data: "/d", Assets: "/a b", TFTPRoot: "/t", State: "/s"})
	var v map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(y), &v))
	assert.Equal(t, "10.99.0.1:8080", v["http"])
	assert.Equal(t, "10.99.0.1:69", v["tftp"])
	assert.Equal(t, "", v["dns"])
	assert.Equal(t, "/a b", v["assets"])
	dhcp := v["dhcp"].(map[string]any)
	assert.Equal(t, "br0", dhcp["interface"])
	assert.Equal(t, []any{"10.99.0.100", "10.99.0.200"}, dhcp["range"])
}

func TestBootFilesFor(t *testing.T) {
	assert.Equal(t, e2e.BootFiles{BIOS: "grub/i386-pc/core.0", EFI: "grub/x86_64-efi/core.efi", HTTP: "grub/x86_64-efi/core-http.efi"}, bootFiles)
	ms := e2e.DefaultMachines()
	assert.Equal(t, bootFiles.EFI, bootFiles.For(ms[0]))
	assert.Equal(t, bootFiles.BIOS, bootFiles.For(ms[1]))
	assert.Equal(t, bootFiles.HTTP, bootFiles.For(e2e.HTTPBootMachine()))
}

func TestCheckTimeline(t *testing.T) {
	m := e2e.DefaultMachines()[0]
	ev := func(stage, detail string) e2e.TimelineEvent { return e2e.TimelineEvent{Stage: stage, Detail: detail} }
	full := []e2e.TimelineEvent{
		ev("dhcp-discover", ""), ev(e2e.StageDHCPLease, "10.99.0.100"), ev(e2e.StageTFTP, bootFiles.EFI),
		ev(e2e.StageTFTP, "grub/grub.cfg"), ev(e2e.StageGrub, ""), ev(e2e.StageKernel, "/assets/vmlinuz"),
		ev(e2e.StageInitrd, "/assets/initrd.cpio"), ev(e2e.StageDHCPLease, ""), ev(e2e.StageIgnition, ""),
	}
	assert.Empty(t, e2e.CheckTimeline([]e2e.TimelineMachine{{MAC: "52-54-00-99-00-01", Events: full}}, m, bootFiles))
	assert.NotEmpty(t, e2e.CheckTimeline(nil, m, bootFiles))
	noKernel := slices.DeleteFunc(slices.Clone(full), func(e e2e.TimelineEvent) bool { return e.Stage == e2e.StageKernel })
	assert.Len(t, e2e.CheckTimeline([]e2e.TimelineMachine{{MAC: m.MAC.String(), Events: noKernel}}, m, bootFiles), 1)
	swapped := slices.Clone(full)
	swapped[4], swapped[8] = swapped[8], swapped[4] // ignition before grub
	assert.NotEmpty(t, e2e.CheckTimeline([]e2e.TimelineMachine{{MAC: m.MAC.String(), Events: swapped}}, m, bootFiles))
	biosBoot := []e2e.TimelineMachine{{MAC: m.MAC.String(), Events: slices.Clone(full)}}
	biosBoot[0].Events[2].Detail = bootFiles.BIOS
	assert.Len(t, e2e.CheckTimeline(biosBoot, m, bootFiles), 1, "UEFI machine must fetch core.efi")

	// An HTTP-boot machine fetches GRUB over HTTP: a TFTP event does not
	// stand in for the http-boot one.
	h := e2e.HTTPBootMachine()
	httpBoot := slices.Clone(full)
	httpBoot[2] = ev(e2e.StageHTTPBoot, "/grub/x86_64-efi/core-http.efi")
	httpBoot[3] = ev(e2e.StageHTTPBoot, "/grub/grub.cfg")
	assert.Empty(t, e2e.CheckTimeline([]e2e.TimelineMachine{{MAC: h.MAC.String(), Events: httpBoot}}, h, bootFiles))
	assert.Len(t, e2e.CheckTimeline([]e2e.TimelineMachine{{MAC: h.MAC.String(), Events: full}}, h, bootFiles), 2, "no http-boot event, none naming core.efi")
	assert.Len(t, e2e.CheckTimeline([]e2e.TimelineMachine{{MAC: h.MAC.String(), Events: httpBoot}}, h, e2e.BootFiles{}), 1, "no boot file to check for")
	args := strings.Join(e2e.QEMUArgs(h.VMConfig(), "tcg", "/s", "/v"), " ")
	assert.Contains(t, args, "name=opt/org.tianocore/IPv4PXESupport,string=n")
	assert.Contains(t, args, "mac=52:54:00:99:00:03,bootindex=1,romfile=")
}

func TestIgnitionFile(t *testing.T) {
	cfg := `{"ignition":{"version":"3.3.0"},"storage":{"files":[` +
		`{"path":"/etc/hostname","contents":{"compression":"","source":"data:,bios.lab"}},` +
		`{"path":"/a","contents":{"source":"data:;base64,bWFjPTUyOjU0OjAwOjk5OjAwOjAy"}},` +
		`{"path":"/b","contents":{"source":"data:,a%20b%3Ac"}},` +
		`{"path":"/z","contents":{"compression":"gzip","source":"data:;base64,H4sI"}}]}}`
	for path, want := range map[string]string{"/etc/hostname": "bios.lab", "/a": "mac=52:54:00:99:00:02", "/b": "a b:c"} {
		got, err := e2e.IgnitionFile(cfg, path)
		assert.NoError(t, err, path)
		assert.Equal(t, want, got, path)
	}
	for _, path := range []string{"/z", "/missing"} {
		_, err := e2e.IgnitionFile(cfg, path)
		assert.Error(t, err, path)
	}
	_, err := e2e.IgnitionFile("{not json", "/a")
	assert.Error(t, err)
}

func TestFailurePatterns(t *testing.T) {
	assert.NoError(t, e2e.ConsoleFailure("GNU GRUB  version 2.06\r\nMETALBOOT-INIT-START\r\n"))
	for _, s := range []string{
		"METALBOOT-GRUB-CONFIGFILE-FAILED\r\n\x1b[0mgrub> ",
		"[ 2.0] Kernel panic - not syncing: VFS\r\n",
		e2e.MarkerError + " udhcpc got no lease\r\n",
	} {
		assert.ErrorIs(t, e2e.ConsoleFailure(s), e2e.ErrBootFailed, "%q", s)
	}
}

// TestIPXEMachines: an iPXE machine's timeline has /boot.ipxe and /ipxe
// where a GRUB machine's has its TFTP image and /grub; the data directory
// gives each machine its profile, both load without warnings, and the
// lab's DHCP hands iPXE clients the boot script's URL.
func TestIPXEMachines(t *testing.T) {
	ms := e2e.IPXEMachines()
	m := ms[0]
	ev := func(stage, detail string) e2e.TimelineEvent { return e2e.TimelineEvent{Stage: stage, Detail: detail} }
	full := []e2e.TimelineEvent{
		ev(e2e.StageDHCPLease, "10.99.0.100"), ev(e2e.StageIPXEBoot, "/boot.ipxe"), ev(e2e.StageIPXE, "profile e2e-named"),
		ev(e2e.StageKernel, "/assets/vmlinuz"), ev(e2e.StageInitrd, "/assets/initrd.cpio"), ev(e2e.StageIgnition, ""),
	}
	assert.Empty(t, e2e.CheckTimeline([]e2e.TimelineMachine{{MAC: m.MAC.String(), Events: full}}, m, bootFiles))
	grub := slices.Clone(full)
	grub[2] = ev(e2e.StageGrub, "")
	assert.Len(t, e2e.CheckTimeline([]e2e.TimelineMachine{{MAC: m.MAC.String(), Events: grub}}, m, bootFiles), 1, "no ipxe event")
	assert.Contains(t, strings.Join(e2e.QEMUArgs(m.VMConfig(), "tcg", "/s", "/v"), " "), "-machine graphics=off")
	assert.NotContains(t, strings.Join(e2e.QEMUArgs(ms[1].VMConfig(), "tcg", "/s", "/v"), " "), "romfile=", "OVMF runs the NIC's iPXE")
	assert.Contains(t, strings.Join(e2e.QEMUArgs(ms[2].VMConfig(), "tcg", "/s", "/v"), " "), "romfile=", "OVMF's own PXE")
	chain := slices.Clone(full)
	assert.Len(t, e2e.CheckTimeline([]e2e.TimelineMachine{{MAC: ms[2].MAC.String(), Events: chain}}, ms[2], bootFiles), 1, "no TFTP event names ipxe.efi")
	chain = append(chain[:1:1], append([]e2e.TimelineEvent{ev(e2e.StageTFTP, e2e.IPXEBinary)}, chain[1:]...)...)
	assert.Empty(t, e2e.CheckTimeline([]e2e.TimelineMachine{{MAC: ms[2].MAC.String(), Events: chain}}, ms[2], bootFiles))

	dir := t.TempDir()
	require.NoError(t, e2e.WriteDataDir(dir, append(ms, e2e.DefaultMachines()...)))
	inv, err := profile.LoadFS(os.DirFS(dir))
	require.NoError(t, err)
	assert.Empty(t, inv.Warnings())
	for _, m := range ms {
		_, p, err := inv.Match(map[string]string{"mac": m.MAC.String()})
		require.NoError(t, err)
		assert.Equal(t, m.ProfileName(), p.ID)
	}

	y := e2e.LabserverYAML(e2e.LabserverConfig{Data: "/d", BootFiles: map[string]string{"bios": e2e.IPXEBootURL, "efi64": e2e.IPXEBootURL}})
	var v map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(y), &v))
	assert.Equal(t, map[string]any{"bios": e2e.IPXEBootURL, "efi64": e2e.IPXEBootURL}, v["dhcp"].(map[string]any)["boot_files"])
}
