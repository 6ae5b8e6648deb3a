//go:build linux

// Package netns is a test harness that builds throw-away Linux network
// namespaces, so tests can run DHCP, broadcast traffic and real peer programs
// (dhclient, udhcpc, perfdhcp, dnsmasq, QEMU …) without ever touching the
// host's interfaces.
//
// Everything a test creates lives inside namespaces made by [New]: bridges,
// veth pairs, tap devices and their addresses are created with
// `ip -n <ns> …`, never in the caller's namespace. Each namespace is deleted
// by t.Cleanup, also when the test fails, and every process started through
// [NS.Command] is killed by its own PID before that (nothing is killed by
// name). Namespaces left behind by a test process that was killed before
// its cleanup ran (mbt<pid>-<n> with a dead pid) are removed by the next New.
//
// A typical two-namespace topology: the server namespace owns a bridge, each
// client namespace gets one end of a veth pair whose other end is enslaved to
// the bridge:
//
//	srv := netns.New(t)                      // skips unless root with `ip`
//	srv.Bridge("br0", "10.99.0.1/24")
//	cli := netns.New(t)
//	srv.Connect("br0", cli, "eth0", "")      // cli's eth0 <-> srv's br0
//	cmd := cli.Command(ctx, "udhcpc", "-i", "eth0", "-q", "-n")
//	err := srv.Do(func() error {             // Go code in srv's namespace
//		conn, err := net.ListenPacket("udp4", ":67")
//		…
//	})
//
// Sockets opened inside [NS.Do] stay in that namespace after Do returns, so
// a server goroutine can keep using them.
//
// Requirements: root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's `ip`.
// [New] calls t.Skip with a clear message when either is missing; [Need]
// does the same for peer programs.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NS is one network namespace created by [New] for the duration of a test.
type NS struct {
	// Name is the namespace name as known to `ip netns`: mbt<pid>-<n>,
	// unique on the machine while the test process lives.
	Name string

	t testing.TB
}

var seq atomic.Int32

// New creates a uniquely named network namespace with its loopback up and
// registers its removal with t.Cleanup. It skips the test when not running
// as root, when `ip` is missing or when namespaces cannot be created here.
func New(t testing.TB) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netns: needs root to create network namespaces (run the tests as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netns: iproute2 `ip` not found in PATH (apt-get install iproute2)")
	}
	removeStale()
	name := fmt.Sprintf("mbt%d-%d", os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("netns: cannot create a network namespace here: ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	ns := &NS{Name: name, t: t}
	t.Cleanup(func() {
		var out []byte
		var err error
		for range 5 { // "resource busy" while another ip netns command runs
			if out, err = exec.Command("ip", "netns", "del", name).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("netns: ip netns del %s: %v: %s", name, err, bytes.TrimSpace(out))
	})
	ns.IP("link", "set", "lo", "up")
	return ns
}

// removeStale deletes namespaces this package created in test processes
// that no longer exist (killed before their cleanup ran). Only names of the
// form mbt<pid>-<n> with a dead <pid> are touched.
func removeStale() {
	staleOnce.Do(func() {
		entries, err := os.ReadDir("/var/run/netns")
		if err != nil {
			return
		}
		for _, e := range entries {
			var pid, n int
			if _, err := fmt.Sscanf(e.Name(), "mbt%d-%d", &pid, &n); err != nil || e.Name() != fmt.Sprintf("mbt%d-%d", pid, n) {
				continue
			}
			if pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
				continue
			}
			_ = exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	})
}

var staleOnce sync.Once

// Need skips the test unless every named program is found in PATH.
func Need(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("netns: peer program %q not found in PATH (install its Debian package)", p)
		}
	}
}

// IP runs `ip -n <ns> args…` and fails the test on error.
func (ns *NS) IP(args ...string) {
	ns.t.Helper()
	full := append([]string{"-n", ns.Name}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		ns.t.Fatalf("netns: ip %s: %v: %s", strings.Join(full, " "), err, bytes.TrimSpace(out))
	}
}

// Bridge creates bridge name inside the namespace, brings it up and, when
// cidr is not empty (e.g. "10.99.0.1/24"), assigns that address to it.
func (ns *NS) Bridge(name, cidr string) {
	ns.t.Helper()
	ns.IP("link", "add", name, "type", "bridge")
	ns.IP("link", "set", name, "up")
	ns.addr(name, cidr)
}

// Veth creates a veth pair inside the namespace: end name (up, with address
// cidr when not empty) and a peer end, enslaved to bridge, whose generated
// name is returned. Both ends stay in this namespace.
func (ns *NS) Veth(name, bridge, cidr string) string {
	ns.t.Helper()
	peer := uniqueName("vb")
	ns.IP("link", "add", name, "type", "veth", "peer", "name", peer)
	ns.IP("link", "set", peer, "master", bridge)
	ns.IP("link", "set", peer, "up")
	ns.IP("link", "set", name, "up")
	ns.addr(name, cidr)
	return peer
}

// Connect links namespace other to this namespace's bridge with a veth
// pair: the end in other is called name (up, with address cidr when not
// empty); the end in ns is enslaved to bridge and its generated name is
// returned.
func (ns *NS) Connect(bridge string, other *NS, name, cidr string) string {
	ns.t.Helper()
	peer := uniqueName("vc")
	tmp := uniqueName("vt")
	ns.IP("link", "add", peer, "type", "veth", "peer", "name", tmp)
	ns.IP("link", "set", tmp, "netns", other.Name)
	other.IP("link", "set", tmp, "name", name)
	ns.IP("link", "set", peer, "master", bridge)
	ns.IP("link", "set", peer, "up")
	other.IP("link", "set", name, "up")
	other.addr(name, cidr)
	return peer
}

// Tap creates a persistent tap device name inside the namespace, enslaved to
// bridge and up, for a QEMU started with [NS.Command]
// (`-netdev tap,id=n0,ifname=<name>,script=no,downscript=no`).
func (ns *NS) Tap(name, bridge string) {
	ns.t.Helper()
	ns.IP("tuntap", "add", "dev", name, "mode", "tap")
	ns.IP("link", "set", name, "master", bridge)
	ns.IP("link", "set", name, "up")
}

// Command returns an *exec.Cmd that runs program inside the namespace
// (through `ip netns exec`, which execs the program, so cmd.Process.Pid is
// the program's own PID). The program runs in a new process group; when ctx
// ends or the test finishes, whichever comes first, that group is killed
// with SIGKILL, so helpers it forked (a shell's children, `timeout`'s
// child) do not outlive the test.
func (ns *NS) Command(ctx context.Context, program string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithCancel(ctx)
	full := append([]string{"netns", "exec", ns.Name, program}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	ns.t.Cleanup(func() {
		cancel()
		if cmd.Process != nil {
			// The group outlives its leader when children were forked;
			// its id is the PID this test started.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	return cmd
}

// Do runs f on a locked OS thread switched into the namespace and returns
// its error. Sockets created by f belong to the namespace and keep working
// after Do returns (from any goroutine). Goroutines started by f do NOT run
// in the namespace.
func (ns *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if restoring the original namespace
		// fails: the runtime then discards it when this goroutine exits.
		orig, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("netns: open current namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns.Name)
		if err != nil {
			errc <- fmt.Errorf("netns: open namespace %s: %w", ns.Name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: setns %s: %w", ns.Name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netns: restore namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func (ns *NS) addr(dev, cidr string) {
	if cidr != "" {
		ns.t.Helper()
		ns.IP("addr", "add", cidr, "dev", dev)
	}
}

var ifSeq atomic.Int32

// uniqueName returns an interface name unused in every namespace this
// process created.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, ifSeq.Add(1))
}
