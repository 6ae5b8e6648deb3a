//go:build linux

// Package e2e is the harness of metalboot's end-to-end tests with real
// firmware: it prepares everything a network-booting QEMU machine needs and
// runs such machines inside a network namespace made by internal/netns.
//
//   - The TFTP root: GRUB network images from Debian's grub-efi-amd64-bin
//     and grub-pc-bin, made by a [TFTPRootFunc] the caller passes to
//     [Prepare] (grubcfg.MakeNetDir in metalboot's tests), so this package
//     imports nothing above internal/ and GRUB's images are made in one
//     place; [BootFiles] says which files DHCP hands out.
//   - [PrepareKernel]: the Debian cloud kernel and its virtio modules,
//     fetched with `apt-get download` and extracted with `dpkg-deb -x` into a
//     cache directory reused between runs (nothing is installed).
//   - [BuildInitrd]: a newc cpio (written by [CPIOWriter], no cpio program
//     needed) holding busybox-static and an /init that loads the virtio
//     modules, takes a DHCP lease with udhcpc, fetches the URL named by
//     metalboot.ignition= (or metalboot.url=) on the kernel command line and
//     prints it between [MarkerIgnitionBegin] and [MarkerIgnitionEnd] on the
//     serial console, then powers off.
//   - [PrepareARM64] (prefetch) and [NeedARM64Packages] (tests): Debian's
//     arm64 GRUB modules (grub-efi-arm64-bin), cloud kernel and
//     busybox-static, unpacked into the same cache, for [ARM64] machines
//     (AAVMF on QEMU's virt machine); [WriteARM64Assets] builds their
//     kernel and initrd.
//   - [NewLab]: a namespace with a bridge 10.99.0.1/24, tap devices for the
//     machines and router advertisements on the bridge (so iPXE does not
//     wait for IPv6); [Lab.Start] runs server processes inside it, stopped by
//     PID; [Lab.HTTPClient] talks to servers inside it.
//   - [StartVM]: QEMU with OVMF (q35, fresh VARS copy) or SeaBIOS (pc),
//     KVM when usable else TCG, always under `timeout`, serial console to a
//     file; [VM.WaitFor] waits for markers on it, [VM.WaitConsole] for a
//     condition of the caller's. A machine is on a tap inside a lab
//     namespace, on QEMU's own user-mode network ([UserNet]: DHCP and TFTP
//     inside QEMU, the host's loopback at 10.0.2.2, no namespace needed), or
//     on no network at all (e.g. GRUB loaded with -kernel: [VMConfig.Kernel],
//     [VMConfig.NoNetwork]).
//
// Every firmware test of metalboot (dhcpsrv's, grubcfg's, labserver's)
// starts its machines and namespaces through this package.
//
// Everything skips with a clear message when not root or when a Debian
// package is missing: qemu-system-x86, ovmf, ipxe-qemu, grub-efi-amd64-bin,
// grub-pc-bin, grub-common, busybox-static, iproute2, and for ARM64
// qemu-system-arm and qemu-efi-aarch64 (and apt/dpkg to fetch the kernel
// package linux-image-*-cloud-amd64, and the arm64 packages, on first
// use).
package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/metalboot/metalboot/internal/files"
	"github.com/metalboot/metalboot/internal/netns"
)

// Addresses of the lab network made by [NewLab].
const (
	BridgeName = "br0"
	ServerIP   = "10.99.0.1"
	ServerCIDR = ServerIP + "/24"
)

// Assets is everything served to the machines, prepared by [Prepare].
type Assets struct {
	Kernel *Kernel
	// Dir holds vmlinuz and initrd.cpio, as served under /assets/.
	Dir string
	// Vmlinuz and Initrd are the files in Dir.
	Vmlinuz, Initrd string
	// TFTPRoot is the directory the TFTPRootFunc made (no grub.cfg).
	TFTPRoot string
	// BootFiles are its boot files, as the TFTPRootFunc reported them.
	BootFiles BootFiles
}

// Prepare skips the test unless every tool is installed, then returns the
// assets for a boot test: the cached Debian kernel, a fresh initrd and a
// fresh TFTP root under a test temporary directory, made by tftpRoot. The
// test fails unless the root has the BIOS and UEFI boot files tftpRoot
// reported. It skips (with the reason) when the kernel package cannot be
// downloaded and is not cached, unless the environment variable
// METALBOOT_E2E_REQUIRE is set (CI), in which case the test fails.
func Prepare(t testing.TB, tftpRoot TFTPRootFunc) *Assets {
	t.Helper()
	netns.Need(t, "grub-mknetdir", "apt-cache", "apt-get", "dpkg-deb")
	NeedFirmware(t, UEFI)
	NeedFirmware(t, BIOS)
	for _, d := range []string{GrubEFIDir, GrubBIOSDir} {
		if _, err := os.Stat(filepath.Join(d, "modinfo.sh")); err != nil {
			t.Skipf("e2e: %s missing (apt-get install grub-efi-amd64-bin grub-pc-bin)", d)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("e2e: /bin/busybox missing (apt-get install busybox-static)")
	}
	if out, err := exec.Command("/bin/busybox", "--list").Output(); err != nil || !slices.Contains(strings.Fields(string(out)), "udhcpc") {
		t.Skip("e2e: /bin/busybox has no udhcpc applet (apt-get install busybox-static)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k, err := PrepareKernel(ctx, CacheDir())
	if errors.Is(err, ErrNoKernel) && os.Getenv("METALBOOT_E2E_REQUIRE") == "" {
		t.Skipf("e2e: %v (set METALBOOT_E2E_REQUIRE=1 to fail instead)", err)
	}
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	dir := t.TempDir()
	a := &Assets{Kernel: k, Dir: filepath.Join(dir, "assets"), TFTPRoot: filepath.Join(dir, "tftp")}
	if err := os.MkdirAll(a.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	a.Vmlinuz = filepath.Join(a.Dir, "vmlinuz")
	a.Initrd = filepath.Join(a.Dir, "initrd.cpio")
	if err := files.CopyAtomic(k.Vmlinuz, a.Vmlinuz); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	if err := WriteInitrd(a.Initrd, InitrdConfig{Modules: k.Modules, EFIModules: k.EFIModules}); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	if err := os.MkdirAll(a.TFTPRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	a.BootFiles, err = tftpRoot(ctx, a.TFTPRoot)
	if err == nil {
		err = checkBootFiles(a.TFTPRoot, a.BootFiles)
	}
	if err != nil {
		t.Fatalf("e2e: TFTP root: %v", err)
	}
	return a
}

// Lab is a network namespace with a bridge the machines' taps join.
type Lab struct {
	NS  *netns.NS
	Dir string
	t   testing.TB
}

// NewLab creates the namespace (skipping unless root) and the bridge
// [BridgeName] with [ServerCIDR]. The namespace and everything in it is
// removed by t.Cleanup. Nothing in the harness sends IPv6 router
// advertisements: the servers under test must end iPXE's IPv6 router wait
// themselves (dhcpsrv.RouterAdvertiser), so the boot times a test measures
// are those a lab without an IPv6 router gets. [Lab.SendRouterAdvertisements]
// adds a router, for comparisons.
func NewLab(t testing.TB) *Lab {
	t.Helper()
	ns := netns.New(t)
	ns.Bridge(BridgeName, ServerCIDR)
	l := &Lab{NS: ns, Dir: t.TempDir(), t: t}
	// No duplicate address detection: the bridge's link-local address is
	// usable as soon as the first tap comes up, so neighbour discovery
	// answers go out at once.
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "sh", "-c",
		"echo 0 > /proc/sys/net/ipv6/conf/"+BridgeName+"/accept_dad").CombinedOutput(); err != nil {
		t.Logf("e2e: disabling DAD on %s: %v: %s", BridgeName, err, out)
	}
	return l
}

// SendRouterAdvertisements makes the lab look like a segment with an IPv6
// router: router advertisements (lifetime 0) on the bridge every 500 ms
// for the rest of the test.
func (l *Lab) SendRouterAdvertisements() {
	l.t.Helper()
	var s RASocket
	if err := l.NS.Do(func() error {
		var err error
		s, err = OpenRASocket(BridgeName)
		return err
	}); err != nil {
		l.t.Fatalf("e2e: router advertisements: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { SendRouterAdvertisements(ctx, s, 500*time.Millisecond); close(done) }()
	l.t.Cleanup(func() { cancel(); <-done })
}

// Tap creates tap device name on the bridge.
func (l *Lab) Tap(name string) { l.t.Helper(); l.NS.Tap(name, BridgeName) }

// Listen opens a listener inside the namespace.
func (l *Lab) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := l.NS.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// HTTPClient returns a client whose connections are made inside the
// namespace.
func (l *Lab) HTTPClient() *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := l.NS.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Process is a server program running inside the lab namespace.
type Process struct {
	Name string
	// Log is the file receiving its stdout and stderr.
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// Start runs program inside the namespace with stdout and stderr appended to
// <lab dir>/<name>.log. It is stopped by PID (SIGTERM, then SIGKILL after
// 5 s) at the end of the test or by [Process.Stop].
func (l *Lab) Start(name, program string, args ...string) *Process {
	l.t.Helper()
	p := &Process{Name: name, Log: filepath.Join(l.Dir, name+".log"), done: make(chan struct{})}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatalf("e2e: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := l.NS.Command(ctx, program, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		cancel()
		f.Close()
		l.t.Fatalf("e2e: start %s: %v", name, err)
	}
	p.cmd = cmd
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	l.t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM by PID and waits (SIGKILL after 5 s).
func (p *Process) Stop() { stopProcess(p.cmd.Process, p.done, 5*time.Second) }

// stopProcess sends SIGTERM to proc by PID, waits up to grace for done,
// then sends SIGKILL and waits.
func stopProcess(proc *os.Process, done <-chan struct{}, grace time.Duration) {
	if proc == nil {
		return
	}
	_ = proc.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = proc.Kill()
		<-done
	}
}

// ExitErr is the exit status once [Process.Done] is closed.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Output returns the process's log so far.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// WaitHTTP polls url through c until it answers 200 or ctx ends.
func WaitHTTP(ctx context.Context, c *http.Client, url string) error {
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("e2e: %s not ready: %v: %w", url, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
