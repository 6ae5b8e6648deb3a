//go:build linux

package grubcfg

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/internal/e2e"
)

const grubPCDir = "/usr/lib/grub/i386-pc"

// runRealGRUB boots GRUB 2.06 itself (Debian's grub-pc-bin image, under
// QEMU, no disk, no network: e2e.VMConfig.Kernel) with files in a memdisk
// and an embedded config that sources main.cfg, and returns what GRUB
// printed on its serial console, escape sequences and CRs removed.
// qemuArgs are added to QEMU's command line.
func runRealGRUB(t *testing.T, files map[string]string, qemuArgs ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not booting GRUB in QEMU")
	}
	e2e.NeedFirmware(t, e2e.BIOS)
	mkimage, err := exec.LookPath("grub-mkimage")
	if err != nil {
		t.Skip("grub-mkimage not installed (apt-get install grub-common)")
	}
	if _, err := os.Stat(filepath.Join(grubPCDir, "lnxboot.img")); err != nil {
		t.Skip("GRUB i386-pc modules not installed (apt-get install grub-pc-bin)")
	}
	dir := t.TempDir()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for name, body := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "md.tar"), tb.Bytes(), 0o644))
	embed := "serial --unit=0 --speed=115200\nterminfo -g 1000x50 serial\nterminal_input serial\nterminal_output serial\n" +
		"set root=(memdisk)\nsource /main.cfg\necho REAL-GRUB-DONE\nhalt\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "embed.cfg"), []byte(embed), 0o644))
	core := filepath.Join(dir, "core.img")
	out, err := exec.Command(mkimage, "-O", "i386-pc", "-d", grubPCDir, "-p", "(memdisk)/",
		"-c", filepath.Join(dir, "embed.cfg"), "-m", filepath.Join(dir, "md.tar"), "-o", core,
		"normal", "echo", "serial", "terminal", "terminfo", "memdisk", "tar", "test", "halt", "configfile", "regexp", "sleep",
		"biosdisk", "chain").CombinedOutput()
	require.NoError(t, err, "grub-mkimage: %s", out)
	lnx, err := os.ReadFile(filepath.Join(grubPCDir, "lnxboot.img"))
	require.NoError(t, err)
	coreImg, err := os.ReadFile(core)
	require.NoError(t, err)
	kernel := filepath.Join(dir, "grub.lnx")
	require.NoError(t, os.WriteFile(kernel, append(lnx, coreImg...), 0o644))

	vm := e2e.StartVM(t, nil, e2e.VMConfig{Name: "grub", Firmware: e2e.BIOS, Kernel: kernel, NoNetwork: true,
		MemoryMB: 128, Dir: dir, Timeout: 90 * time.Second, ExtraArgs: qemuArgs})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	err = vm.Wait(ctx)
	output := func() string { return vm.Serial() + vm.Output() }
	require.NoError(t, ctx.Err(), "QEMU did not finish in time; output:\n%s", output())
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 124 {
		t.Fatalf("QEMU did not finish in time (timeout killed it); output:\n%s", output())
	}
	if !errors.As(err, &exit) || exit.ExitCode() != 1 { // 1: isa-debug-exit, see TestRealGRUBLocalBootBIOS
		require.NoError(t, err, "qemu: %s", output())
	}
	return e2e.StripANSI(vm.Serial())
}

// TestRealGRUB runs Quote's output and the rendered configurations through
// GRUB 2.06 itself: every quoted value must come back from echo exactly
// (printable ASCII values) and no value may run a command; every rendered
// configuration must source without a syntax error.
func TestRealGRUB(t *testing.T) {
	var main strings.Builder
	var printable []int
	for i, x := range quoteSeeds {
		fmt.Fprintf(&main, "echo '@@%d['%s']@@'\n", i, Quote(x))
		if isPrintableASCII(x) {
			printable = append(printable, i)
		}
	}
	// The harness can fail: a value quoted naively (no escaping of ')
	// runs its payload as a command, and GRUB says so.
	main.WriteString("echo '" + "x'; injectedcmd; echo '" + "'\n")
	files := map[string]string{}
	goldens, err := filepath.Glob("testdata/*.golden")
	require.NoError(t, err)
	for _, g := range goldens {
		b, err := os.ReadFile(g)
		require.NoError(t, err)
		name := strings.TrimSuffix(filepath.Base(g), ".golden")
		if bytes.Contains(b, []byte("\nreboot\n")) || bytes.Contains(b, []byte("\nexit\n")) {
			continue // first stages that give up: they would end the run
		}
		files[name+".cfg"] = string(b)
		fmt.Fprintf(&main, "echo 'SOURCE %s'\nunset default\nsource /%s.cfg\nset root=(memdisk)\necho \"SOURCED %s default=$default\"\n", name, name, name)
	}
	files["main.cfg"] = main.String()
	out := runRealGRUB(t, files)
	require.Contains(t, out, "REAL-GRUB-DONE", "GRUB did not reach the end of its script:\n%s", out)

	// An injected word would be run as a command: GRUB (whose image has
	// no reboot module) would say "can't find command"; a real reboot
	// would have ended QEMU before REAL-GRUB-DONE.
	assert.Contains(t, out, "can't find command `injectedcmd'", "the naive quote's payload runs")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "error:") && !strings.Contains(line, "injectedcmd") {
			// The first stages' insmod of network modules, absent here.
			assert.Regexp(t, `error: file .*/(net|http|efinet)\.mod' not found`, line, "unexpected GRUB error")
		}
	}
	for _, i := range printable {
		want := fmt.Sprintf("@@%d[%s]@@", i, stripUncarried(quoteSeeds[i]))
		assert.Contains(t, out, want, "GRUB echoed value %d differently", i)
	}
	for name := range files {
		name = strings.TrimSuffix(name, ".cfg")
		if name == "main" {
			continue
		}
		if strings.HasPrefix(name, "firststage") {
			assert.Contains(t, out, "SOURCED "+name+" default=\n", name)
			continue
		}
		// i386-pc: the BIOS entry is the default.
		assert.Contains(t, out, "SOURCED "+name+" default=bios\n", name)
	}
	if t.Failed() {
		t.Logf("GRUB output:\n%s", out)
	}
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 || c > 0x7e) && c != '\n' && c != 0 && c != '\r' {
			return false
		}
	}
	return true
}

// TestRealGRUBLocalBootBIOS boots RenderLocal's configuration in BIOS GRUB
// 2.06 with a disk whose MBR prints "MBR-BOOTED" on the serial port and
// powers QEMU off: the BIOS entry must be the default and must chainload
// the disk.
func TestRealGRUBLocalBootBIOS(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, RenderLocal(&buf, resolve(t, demoResolver(t), "mac=00:30:48:fb:e2:44"), Options{}))
	disk := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(disk, testMBR(), 0o644))
	out := runRealGRUB(t, map[string]string{
		"main.cfg":  "configfile /local.cfg\n",
		"local.cfg": buf.String(),
	}, "-drive", "file="+disk+",format=raw,if=ide", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04")
	assert.Contains(t, out, "metalboot: installed; booting the master boot record of (hd0)")
	assert.Contains(t, out, "MBR-BOOTED", "GRUB chainloaded the disk's MBR; output:\n%s", out)
	assert.NotContains(t, out, "error:")
}

// testMBR is a 1 MiB disk whose boot sector writes "MBR-BOOTED" to COM1
// and exits QEMU through isa-debug-exit (port 0xf4).
func testMBR() []byte {
	code := []byte{
		0x31, 0xC0, // xor ax,ax
		0x8E, 0xD8, // mov ds,ax
		0xFC,             // cld
		0xBA, 0xF8, 0x03, // mov dx,0x3f8
		0xBE, 0x1B, 0x7C, // mov si,0x7c1b (msg)
		0xAC,       // loop: lodsb
		0x84, 0xC0, // test al,al
		0x74, 0x03, // jz done
		0xEE,       // out dx,al
		0xEB, 0xF8, // jmp loop
		0xB0, 0x00, // done: mov al,0
		0xE6, 0xF4, // out 0xf4,al (QEMU exits with status 1)
		0xFA, 0xF4, 0xEB, 0xFE, // cli; hlt; jmp $
	}
	code = append(code, "MBR-BOOTED\r\n\x00"...)
	img := make([]byte, 1<<20)
	copy(img, code)
	img[510], img[511] = 0x55, 0xAA
	return img
}
