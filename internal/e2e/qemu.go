//go:build linux

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/files"
	"github.com/metalboot/metalboot/internal/netns"
)

// Firmware selects how a test machine starts.
type Firmware string

// The two firmware kinds of the end-to-end test.
const (
	// UEFI is OVMF on a q35 machine (client architecture 7, x86_64-efi).
	UEFI Firmware = "uefi"
	// BIOS is SeaBIOS with the iPXE option ROM on a pc machine (client
	// architecture 0, i386-pc).
	BIOS Firmware = "bios"
)

// Paths of Debian's firmware and emulator.
const (
	QEMUBinary = "qemu-system-x86_64"
	OVMFCode   = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars   = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// ErrVMExited is returned by [VM.WaitFor] and [VM.WaitConsole] when QEMU
// exited before the markers appeared (the condition held).
var ErrVMExited = errors.New("e2e: VM exited")

// Accel returns the QEMU accelerator to use: METALBOOT_E2E_ACCEL when set,
// "kvm" when /dev/kvm opens and the CPU advertises vmx or svm, else "tcg".
// (A /dev/kvm without vmx/svm, as on some nested cloud machines, makes OVMF
// hang with an emulation failure.)
func Accel() string {
	if a := os.Getenv("METALBOOT_E2E_ACCEL"); a != "" {
		return a
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	cpu, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "tcg"
	}
	for _, line := range strings.Split(string(cpu), "\n") {
		if strings.HasPrefix(line, "flags") {
			for _, fl := range strings.Fields(line) {
				if fl == "vmx" || fl == "svm" {
					return "kvm"
				}
			}
			break
		}
	}
	return "tcg"
}

// NeedFirmware skips the test unless QEMU, the firmware for fw and
// `timeout` are installed.
func NeedFirmware(t testing.TB, fw Firmware) {
	t.Helper()
	netns.Need(t, QEMUBinary, "timeout")
	if fw == UEFI {
		for _, f := range []string{OVMFCode, OVMFVars} {
			if _, err := os.Stat(f); err != nil {
				t.Skipf("e2e: %s missing (apt-get install ovmf)", f)
			}
		}
	}
}

// VMConfig describes one test machine.
type VMConfig struct {
	// Name labels logs and files.
	Name     string
	Firmware Firmware
	MAC      hwaddr.MAC
	// Tap is the tap device QEMU opens inside the namespace (create it with
	// netns.NS.Tap or Lab.Tap first), unless UserNet or NoNetwork is set.
	Tap string
	// UserNet, when set, puts the machine on QEMU's user-mode network
	// instead of a tap.
	UserNet *UserNet
	// NoNetwork leaves the network card out (Tap and UserNet are
	// ignored).
	NoNetwork bool
	// Kernel, when set, is loaded by QEMU's -kernel option (a Linux kernel,
	// or GRUB's lnxboot.img followed by a core image): the firmware runs it
	// instead of booting from a disk or the network.
	Kernel string
	// ExtraArgs are appended to QEMU's command line (drives, devices such
	// as isa-debug-exit).
	ExtraArgs []string
	// Dir receives the serial log and, for UEFI, the VARS copy.
	Dir string
	// Timeout bounds QEMU's run time (it runs under `timeout`); zero means
	// 3 minutes.
	Timeout time.Duration
	// MemoryMB is the guest RAM; zero means 512 (1024 for ARM64).
	MemoryMB int
	// UseOVMFPXE disables the iPXE option ROM of the NIC under UEFI so that
	// OVMF's own PXE client (EDK2's, as on real hardware) boots.
	UseOVMFPXE bool
	// HTTPBoot makes a UEFI machine boot over HTTP (UEFI HTTP boot, DHCP
	// vendor class "HTTPClient", architecture 16): OVMF's PXE boot options
	// are switched off through fw_cfg and the NIC's iPXE ROM is left out.
	HTTPBoot bool
	// UUID is the SMBIOS system UUID (QEMU -uuid), which firmware sends in
	// DHCP option 97; empty means QEMU's default.
	UUID string
	// SecureBoot runs a UEFI machine with Secure Boot enforced (see
	// [SecureBootArgs]): OVMF's Secure Boot build with Microsoft's keys
	// enrolled, OVMF's own PXE (implies UseOVMFPXE).
	SecureBoot bool
}

// UserNet is QEMU's user-mode network (slirp): QEMU itself answers the
// guest's DHCP (10.0.2.15), serves TFTPRoot over TFTP with BootFile as
// the boot file (DHCP file/option 67), and connects the guest's 10.0.2.2
// to the loopback of the namespace QEMU runs in, where the test's servers
// listen on 127.0.0.1. Nothing leaves QEMU: no tap, no namespace needed,
// no broadcast on any interface. IPv6 is off.
type UserNet struct {
	// TFTPRoot is the directory QEMU serves over TFTP.
	TFTPRoot string
	// BootFile is the boot file QEMU's DHCP names, relative to TFTPRoot.
	BootFile string
}

// VM is a running QEMU started by [StartVM].
type VM struct {
	Config VMConfig
	// SerialLog is the file QEMU writes the guest's serial console to.
	SerialLog string
	// Args is the full command line (for failure reports).
	Args    []string
	Started time.Time

	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// QEMUArgs returns the QEMU arguments for cfg (qemu-system-x86_64's, or
// qemu-system-aarch64's for [ARM64]), writing the serial console to
// serial and using vars as the UEFI VARS flash.
func QEMUArgs(cfg VMConfig, accel, serial, vars string) []string {
	mem := cfg.MemoryMB
	if mem == 0 {
		mem = 512
		if cfg.Firmware == ARM64 {
			mem = 1024
		}
	}
	if cfg.Firmware == ARM64 {
		accel = "tcg" // no ARM64 KVM on an x86 host
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none",
		"-accel", accel, "-m", strconv.Itoa(mem), "-smp", "1",
		"-no-reboot",
		"-chardev", "file,id=ser0,path=" + qemuOpt(serial),
		"-serial", "chardev:ser0",
	}
	switch {
	case cfg.NoNetwork:
	case cfg.UserNet != nil:
		args = append(args, "-netdev", "user,id=n0,ipv6=off,tftp="+qemuOpt(cfg.UserNet.TFTPRoot)+",bootfile="+qemuOpt(cfg.UserNet.BootFile))
	default:
		args = append(args, "-netdev", "tap,id=n0,ifname="+qemuOpt(cfg.Tap)+",script=no,downscript=no")
	}
	if cfg.UUID != "" {
		args = append(args, "-uuid", cfg.UUID)
	}
	nic := "virtio-net-pci,netdev=n0,mac=" + cfg.MAC.String() + ",bootindex=1"
	switch cfg.Firmware {
	case UEFI:
		if cfg.SecureBoot {
			args = append(args, SecureBootArgs(vars)...)
		} else {
			args = append(args, "-machine", "q35",
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
				"-drive", "if=pflash,format=raw,unit=1,file="+qemuOpt(vars))
		}
		if cfg.UseOVMFPXE || cfg.HTTPBoot || cfg.SecureBoot {
			nic += ",romfile="
		}
		if cfg.HTTPBoot {
			args = append(args,
				"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
				"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
		}
	case ARM64:
		machine, rom := arm64QEMUArgs(cfg, vars)
		args = append(args, machine...)
		nic += rom
	default:
		args = append(args, "-machine", "pc")
	}
	if cfg.Kernel != "" {
		args = append(args, "-kernel", cfg.Kernel)
	}
	if !cfg.NoNetwork {
		args = append(args, "-device", nic)
	}
	return append(args, cfg.ExtraArgs...)
}

// qemuOpt escapes a value inside a QEMU option list, where ',' separates
// options (",," is a literal comma).
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// StartVM powers on a machine inside ns, under `timeout`, and registers a
// cleanup that stops it (SIGTERM to `timeout`, which forwards it to QEMU,
// then SIGKILL; both by PID). ns may be nil for a machine without a tap
// (cfg.UserNet or cfg.NoNetwork): QEMU then runs in the test's own network
// namespace, which such a machine cannot reach beyond its loopback.
func StartVM(t testing.TB, ns *netns.NS, cfg VMConfig) *VM {
	t.Helper()
	if ns == nil && !cfg.NoNetwork && cfg.UserNet == nil {
		t.Fatalf("e2e: %s: a machine on a tap needs the namespace the tap lives in", cfg.Name)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	serial := filepath.Join(cfg.Dir, cfg.Name+"-serial.log")
	vars := filepath.Join(cfg.Dir, cfg.Name+"-OVMF_VARS.fd")
	qemu := QEMUBinary
	switch cfg.Firmware {
	case UEFI:
		if err := files.CopyAtomic(varsTemplate(cfg), vars); err != nil {
			t.Fatalf("e2e: fresh OVMF VARS: %v", err)
		}
	case ARM64:
		vars = filepath.Join(cfg.Dir, cfg.Name+"-AAVMF_VARS.fd")
		if err := files.CopyAtomic(AAVMFVars, vars); err != nil {
			t.Fatalf("e2e: fresh AAVMF VARS: %v", err)
		}
		qemu = QEMUARM64Binary
	}
	if err := os.WriteFile(serial, nil, 0o644); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	args := append([]string{"-k", "5", strconv.Itoa(int(timeout.Seconds())), qemu},
		QEMUArgs(cfg, Accel(), serial, vars)...)
	vm := &VM{Config: cfg, SerialLog: serial, Args: args, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.Command(ctx, "timeout", args...)
	} else {
		cmd = exec.CommandContext(ctx, "timeout", args...)
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stdout = &lockedWriter{mu: &vm.mu, w: &vm.out}
	cmd.Stderr = cmd.Stdout
	vm.cmd = cmd
	vm.Started = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("e2e: start %s: %v", cfg.Name, err)
	}
	go func() {
		err := cmd.Wait()
		vm.mu.Lock()
		vm.err = err
		vm.mu.Unlock()
		close(vm.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-vm.done:
		case <-time.After(20 * time.Second):
			t.Logf("e2e: %s (pid %d) did not stop", cfg.Name, cmd.Process.Pid)
		}
	})
	return vm
}

// Stop ends QEMU (SIGTERM to its `timeout` wrapper by PID) and waits for it.
func (vm *VM) Stop() { stopProcess(vm.cmd.Process, vm.done, 10*time.Second) }

// Pid is the process ID of the `timeout` wrapper that runs QEMU.
func (vm *VM) Pid() int { return vm.cmd.Process.Pid }

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait waits until QEMU exits and returns its exit status ([VM.ExitErr]),
// or returns ctx's error when ctx ends first (QEMU keeps running; the
// test's cleanup stops it).
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
		return vm.ExitErr()
	case <-ctx.Done():
		return fmt.Errorf("e2e: %s: waiting for QEMU to exit: %w", vm.Config.Name, ctx.Err())
	}
}

// ExitErr is QEMU's exit status once [VM.Done] is closed (nil: it powered
// off cleanly; exit status 124: `timeout` killed it).
func (vm *VM) ExitErr() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.err
}

// Output is what QEMU itself printed on stdout/stderr.
func (vm *VM) Output() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.out.String()
}

// Serial returns the serial console captured so far.
func (vm *VM) Serial() string {
	b, _ := os.ReadFile(vm.SerialLog)
	return string(b)
}

// WaitFor polls the serial log until it contains every marker (as
// substrings: the log has ANSI escapes and carriage returns), until ctx
// ends, until QEMU exits without printing them, or until the console shows
// that the boot failed ([ErrBootFailed]: GRUB's prompt, a kernel panic, the
// initrd's [MarkerError]). It returns the time from
// power-on to the moment the markers were seen.
func (vm *VM) WaitFor(ctx context.Context, markers ...string) (time.Duration, error) {
	all := func(s string) bool {
		for _, m := range markers {
			if !strings.Contains(s, m) {
				return false
			}
		}
		return true
	}
	return vm.wait(ctx, all, failure, fmt.Sprintf("printing %q", markers), fmt.Sprintf("%q", markers))
}

// WaitConsole polls the serial console, with escape sequences and
// carriage returns removed ([StripANSI]), until cond reports true for it,
// until QEMU exits ([ErrVMExited], unless cond holds for the final
// console) or until ctx ends. It returns the time from power-on to that
// moment. Unlike [VM.WaitFor] it knows nothing of boot failures: it is for
// tests that watch the console for conditions of their own.
func (vm *VM) WaitConsole(ctx context.Context, cond func(console string) bool) (time.Duration, error) {
	return vm.wait(ctx, func(s string) bool { return cond(StripANSI(s)) }, nil, "the console condition held", "the console condition")
}

// wait polls the serial log for done; before and waitingFor describe what
// it waits for in the errors for an exited VM and an ended ctx.
func (vm *VM) wait(ctx context.Context, done func(serial string) bool, fail func(serial string) error, before, waitingFor string) (time.Duration, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		exited := false
		select {
		case <-vm.done:
			exited = true
		default:
		}
		s := vm.Serial()
		if done(s) {
			return time.Since(vm.Started), nil
		}
		if exited {
			return time.Since(vm.Started), fmt.Errorf("%w (%v) before %s", ErrVMExited, vm.ExitErr(), before)
		}
		if fail != nil {
			if err := fail(s); err != nil {
				return time.Since(vm.Started), fmt.Errorf("e2e: %s: %w", vm.Config.Name, err)
			}
		}
		select {
		case <-ctx.Done():
			return time.Since(vm.Started), fmt.Errorf("e2e: %s: waiting for %s: %w", vm.Config.Name, waitingFor, ctx.Err())
		case <-tick.C:
		}
	}
}

// ErrBootFailed is wrapped by [VM.WaitFor] when the serial console shows
// that the boot cannot go on: the initrd printed [MarkerError], GRUB dropped
// to its interactive prompt, or the kernel panicked.
var ErrBootFailed = errors.New("boot failed")

// failurePatterns are console texts after which a boot never completes.
var failurePatterns = []string{MarkerError, "grub> ", "grub rescue> ", "Kernel panic"}

func failure(serial string) error {
	for _, p := range failurePatterns {
		if i := strings.Index(serial, p); i >= 0 {
			line, _, _ := strings.Cut(serial[i:], "\n")
			return fmt.Errorf("%w: console shows %q", ErrBootFailed, strings.TrimSpace(StripANSI(line)))
		}
	}
	return nil
}

// Tail returns the last n lines of the serial log with carriage returns
// and ANSI escape sequences removed, for failure reports.
func (vm *VM) Tail(n int) string {
	return TailLines(StripANSI(vm.Serial()), n)
}

// StripANSI removes ANSI escape sequences and carriage returns.
func StripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\r':
		case c == 0x1b && i+1 < len(s) && s[i+1] == '[':
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
		case c == 0x1b && i+1 < len(s) && strings.IndexByte("()*+", s[i+1]) >= 0:
			i += 2 // character set designation, e.g. ESC ( B
		case c == 0x1b:
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// TailLines returns the last n lines of s.
func TailLines(s string, n int) string {
	return lastLines(s, n)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
