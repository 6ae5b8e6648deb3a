//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Markers the initrd's init prints on the console, one per line, so a test
// reading the serial log knows how far the machine got. The fetched config is
// printed between [MarkerIgnitionBegin] and [MarkerIgnitionEnd].
const (
	MarkerInitStart     = "METALBOOT-INIT-START"
	MarkerLease         = "METALBOOT-DHCP-BOUND"
	MarkerIgnitionBegin = "METALBOOT-IGNITION-BEGIN"
	MarkerIgnitionEnd   = "METALBOOT-IGNITION-END"
	MarkerError         = "METALBOOT-ERROR"
	MarkerPoweroff      = "METALBOOT-POWEROFF"
	// MarkerSecureBoot starts the line on which a UEFI machine's initrd
	// prints the bytes of the SecureBoot EFI variable (attributes, then
	// the value: 01 when Secure Boot is on), or "unreadable".
	MarkerSecureBoot = "METALBOOT-SECUREBOOT"
)

// EFIModules are the modules the initrd loads on a UEFI machine, before
// it reads the SecureBoot variable from efivarfs (a module in Debian's
// cloud kernel).
var EFIModules = []string{"efivarfs"}

// DefaultURLParams are the kernel command-line parameters, in order of
// preference, whose value the initrd fetches: labserver profiles use
// metalboot.ignition=, the stand-in server uses metalboot.url=.
var DefaultURLParams = []string{"metalboot.ignition", "metalboot.url"}

// VirtioModules lists, in load order, the modules the Debian cloud kernel
// needs to drive a virtio-net NIC (they are modules there, not built in).
var VirtioModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
	"virtio_pci", "failover", "net_failover", "virtio_net",
}

// InitrdConfig describes the tiny test initramfs built by [BuildInitrd].
type InitrdConfig struct {
	// Busybox is the path of a statically linked busybox (Debian's
	// busybox-static installs /bin/busybox). Empty means /bin/busybox.
	Busybox string
	// Modules are kernel module files (.ko) loaded with insmod in this
	// order, e.g. [Kernel.Modules].
	Modules []string
	// URLParams are the kernel parameters holding the URL to fetch; empty
	// means [DefaultURLParams].
	URLParams []string
	// EFIModules are loaded only on a UEFI machine, e.g.
	// [Kernel.EFIModules].
	EFIModules []string
}

// udhcpcScript configures the leased address; udhcpc passes mask as a prefix
// length.
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	for r in $router; do ip route add default via "$r" dev "$interface"; break; done
	echo "` + MarkerLease + ` $interface $ip/$mask router=$router"
	;;
esac
exit 0
`

// initScript is /init: it prints progress markers, brings up the NIC with
// DHCP, fetches the URL named on the kernel command line and prints it, then
// powers the machine off (QEMU runs with -no-reboot and exits).
const initScript = `#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo 1 > /proc/sys/kernel/printk
echo "` + MarkerInitStart + `"
fail() { echo "` + MarkerError + ` $*"; echo "` + MarkerPoweroff + `"; poweroff -f; sleep 10; }
for m in /lib/modules/*.ko; do
	[ -e "$m" ] || continue
	insmod "$m" || echo "insmod $m failed"
done
if [ -d /sys/firmware/efi ]; then
	for m in /lib/efi/*.ko; do
		[ -e "$m" ] || continue
		insmod "$m" || echo "insmod $m failed"
	done
	mount -t efivarfs efivarfs /sys/firmware/efi/efivars || echo "mount efivarfs failed"
	sb=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
	if [ -r "$sb" ]; then
		echo "` + MarkerSecureBoot + `" $(od -An -tx1 "$sb")
	else
		echo "` + MarkerSecureBoot + ` unreadable:" $(ls /sys/firmware/efi/efivars | head -n 5)
	fi
fi
url=
for p in @PARAMS@; do
	for x in $(cat /proc/cmdline); do
		case "$x" in "$p="*) [ -z "$url" ] && url="${x#*=}" ;; esac
	done
done
[ -n "$url" ] || fail "no URL parameter (@PARAMS@) on the kernel command line: $(cat /proc/cmdline)"
i=0
while ! ip link show eth0 >/dev/null 2>&1; do
	i=$((i+1)); [ $i -gt 50 ] && fail "no eth0"; sleep 0.1
done
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /etc/udhcpc.script -q -n -t 10 -T 1 || fail "udhcpc got no lease"
echo "fetching $url"
out=$(wget -q -O - "$url") || fail "wget $url failed"
echo "` + MarkerIgnitionBegin + `"
printf '%s\n' "$out"
echo "` + MarkerIgnitionEnd + `"
echo "` + MarkerPoweroff + `"
poweroff -f
sleep 10
`

// BuildInitrd writes an uncompressed newc cpio initramfs to w: busybox with
// its applets installed as symlinks, the given modules under /lib/modules
// (numbered so the shell glob keeps their order), a /dev/console node, a
// udhcpc script and the /init script described at [initScript].
func BuildInitrd(w io.Writer, cfg InitrdConfig) error {
	bb := cfg.Busybox
	if bb == "" {
		bb = "/bin/busybox"
	}
	bin, err := os.ReadFile(bb)
	if err != nil {
		return fmt.Errorf("e2e: initrd: read busybox: %w", err)
	}
	params := cfg.URLParams
	if len(params) == 0 {
		params = DefaultURLParams
	}
	c := NewCPIOWriter(w)
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "lib", "lib/modules", "lib/efi", "root", "run", "var"} {
		if err := c.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := c.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := c.CharDev("dev/null", 0o666, 1, 3); err != nil {
		return err
	}
	if err := c.File("bin/busybox", 0o755, bin); err != nil {
		return err
	}
	for _, a := range []string{"sh", "mount", "cat", "echo", "ip", "udhcpc", "wget", "insmod", "poweroff", "sleep", "printf", "ls", "dmesg", "od", "head"} {
		if err := c.Symlink("bin/"+a, "busybox"); err != nil {
			return err
		}
	}
	for i, m := range cfg.Modules {
		data, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("e2e: initrd: read module: %w", err)
		}
		name := fmt.Sprintf("lib/modules/%02d-%s", i, filepath.Base(m))
		if err := c.File(name, 0o644, data); err != nil {
			return err
		}
	}
	for _, m := range cfg.EFIModules {
		data, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("e2e: initrd: read module: %w", err)
		}
		if err := c.File("lib/efi/"+filepath.Base(m), 0o644, data); err != nil {
			return err
		}
	}
	if err := c.File("etc/udhcpc.script", 0o755, []byte(udhcpcScript)); err != nil {
		return err
	}
	script := strings.ReplaceAll(initScript, "@PARAMS@", strings.Join(params, " "))
	if err := c.File("init", 0o755, []byte(script)); err != nil {
		return err
	}
	return c.Close()
}

// WriteInitrd builds the initrd with [BuildInitrd] into the file path.
func WriteInitrd(path string, cfg InitrdConfig) error {
	var buf bytes.Buffer
	if err := BuildInitrd(&buf, cfg); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("e2e: initrd: %w", err)
	}
	return nil
}

// ExtractIgnition returns the text the initrd printed between
// [MarkerIgnitionBegin] and [MarkerIgnitionEnd] in a serial log, with
// carriage returns removed, and whether both markers were found.
func ExtractIgnition(serial string) (string, bool) {
	s := strings.ReplaceAll(serial, "\r", "")
	_, after, ok := strings.Cut(s, MarkerIgnitionBegin+"\n")
	if !ok {
		return "", false
	}
	body, _, ok := strings.Cut(after, MarkerIgnitionEnd)
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(body, "\n"), true
}
