//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/files"
	"github.com/metalboot/metalboot/internal/netns"
)

// ARM64 is AAVMF (EDK2 for ARM64) on QEMU's virt machine with a
// Cortex-A57 under TCG: client architecture 11 (arm64-efi over TFTP), or
// 19 with [Machine.HTTPBoot] (UEFI HTTP boot).
const ARM64 Firmware = "arm64"

// The ARM64 emulator and firmware (Debian packages qemu-system-arm and
// qemu-efi-aarch64).
const (
	QEMUARM64Binary = "qemu-system-aarch64"
	AAVMFCode       = "/usr/share/AAVMF/AAVMF_CODE.fd"
	AAVMFVars       = "/usr/share/AAVMF/AAVMF_VARS.fd"
)

// Debian arm64 packages the ARM64 boot needs, fetched by [PrepareARM64]
// with `apt-get download` (after `dpkg --add-architecture arm64` and
// `apt-get update`, which .ci/test does as root) and unpacked with
// `dpkg-deb -x`, never installed.
const (
	// KernelMetaPackageARM64's versioned dependency
	// (linux-image-<version>-cloud-arm64) is the ARM64 kernel: an
	// uncompressed Image with an EFI stub, virtio-net and virtio-pci as
	// modules ([VirtioModules], as on amd64).
	KernelMetaPackageARM64 = "linux-image-cloud-arm64"
	// GrubARM64Package holds GRUB's arm64-efi modules
	// (usr/lib/grub/arm64-efi), which the amd64 grub-mknetdir and
	// grub-mkimage take.
	GrubARM64Package = "grub-efi-arm64-bin"
	// BusyboxARM64Package is the initrd's userland (bin/busybox).
	BusyboxARM64Package = "busybox-static"
)

// ARM64Packages are the unpacked arm64 packages of [PrepareARM64].
type ARM64Packages struct {
	// Kernel is the ARM64 cloud kernel with its virtio modules.
	Kernel *Kernel
	// GrubDir is GRUB's arm64-efi module directory (for
	// grubcfg.NetDirOptions.PlatformDirs).
	GrubDir string
	// Busybox is the static arm64 busybox (for InitrdConfig.Busybox).
	Busybox string
}

// ErrNoARM64 is wrapped when the arm64 packages can be neither found in
// the cache nor downloaded.
var ErrNoARM64 = errors.New("e2e: Debian arm64 packages not available")

var depARM64RE = regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-[0-9][^\s:]*-cloud-arm64)(:arm64)?\s*$`)

// ARM64Manifest is the file in the cache directory where [PrepareARM64]
// records what it unpacked, for [CachedARM64].
const ARM64Manifest = "arm64-packages.json"

// PrepareARM64 returns the arm64 packages unpacked under cacheDir (the
// same cache as [PrepareKernel]) at apt's candidate versions, downloading
// them on first use, and records them in [ARM64Manifest]. Without the
// arm64 architecture in dpkg (dpkg --add-architecture arm64) or a mirror,
// it uses what the cache holds; with neither it returns an error wrapping
// [ErrNoARM64] that says what to run.
func PrepareARM64(ctx context.Context, cacheDir string) (*ARM64Packages, error) {
	p, err := prepareARM64Apt(ctx, cacheDir)
	if err == nil {
		if b, merr := json.MarshalIndent(p, "", "  "); merr == nil {
			_ = os.WriteFile(filepath.Join(cacheDir, ARM64Manifest), b, 0o644)
		}
	}
	return p, err
}

// CachedARM64 returns the packages the last [PrepareARM64] recorded in
// cacheDir, without asking apt (which takes seconds per question on a
// busy machine), after checking that every file is still there.
func CachedARM64(cacheDir string) (*ARM64Packages, error) {
	b, err := os.ReadFile(filepath.Join(cacheDir, ARM64Manifest))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoARM64, err)
	}
	var p ARM64Packages
	if err := json.Unmarshal(b, &p); err != nil || p.Kernel == nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoARM64, ARM64Manifest, err)
	}
	k, err := loadKernel(p.Kernel.Package, p.Kernel.Dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoARM64, err)
	}
	p.Kernel = k
	if err := statFile(filepath.Join(p.GrubDir, "modinfo.sh")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoARM64, err)
	}
	if err := statFile(p.Busybox); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoARM64, err)
	}
	return &p, nil
}

func prepareARM64Apt(ctx context.Context, cacheDir string) (*ARM64Packages, error) {
	p, err := prepareARM64(ctx, cacheDir)
	if errors.Is(err, ErrNoARM64) && hasForeignArch(ctx, "arm64") {
		// The arm64 lists may be missing or stale: refresh once.
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); uerr == nil {
			p, err = prepareARM64(ctx, cacheDir)
		} else {
			err = fmt.Errorf("%w (apt-get update: %v: %s)", err, uerr, lastLines(string(out), 3))
		}
	}
	return p, err
}

func prepareARM64(ctx context.Context, cacheDir string) (*ARM64Packages, error) {
	var p ARM64Packages
	kpkg, err := resolveARM64Kernel(ctx)
	if err == nil {
		p.Kernel, err = unpackDeb(ctx, cacheDir, kpkg, kpkg+":arm64", ErrNoARM64, archHint(ctx), func(dir string) (*Kernel, error) { return loadKernel(kpkg, dir) })
	}
	if err != nil {
		k, cerr := cachedARM64Kernel(cacheDir)
		if cerr != nil {
			return nil, err
		}
		p.Kernel = k
	}
	grub, err := unpackVersioned(ctx, cacheDir, GrubARM64Package, func(dir string) (string, error) {
		d := filepath.Join(dir, "usr", "lib", "grub", "arm64-efi")
		return d, statFile(filepath.Join(d, "modinfo.sh"))
	})
	if err != nil {
		return nil, err
	}
	bb, err := unpackVersioned(ctx, cacheDir, BusyboxARM64Package, func(dir string) (string, error) {
		f := filepath.Join(dir, "bin", "busybox")
		return f, statFile(f)
	})
	if err != nil {
		return nil, err
	}
	p.GrubDir, p.Busybox = grub, bb
	return &p, nil
}

// NeedARM64 skips the test unless the ARM64 emulator, AAVMF and `timeout`
// are installed.
func NeedARM64(t testing.TB) {
	t.Helper()
	netns.Need(t, QEMUARM64Binary, "timeout")
	for _, f := range []string{AAVMFCode, AAVMFVars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("e2e: %s missing (apt-get install qemu-efi-aarch64)", f)
		}
	}
}

// ARM64Assets are an ARM64 kernel and initrd, as served under /assets/.
type ARM64Assets struct {
	Packages *ARM64Packages
	// Vmlinuz and Initrd are the files under the assets directory.
	Vmlinuz, Initrd string
}

// ARM64AssetDir is where [WriteARM64Assets] puts the ARM64 kernel and
// initrd under the assets directory ([ARM64Profile] boots them).
const ARM64AssetDir = "arm64"

// NeedARM64Packages skips the test unless QEMU for ARM64 and AAVMF are
// installed, then returns the arm64 packages: those prefetch recorded
// ([CachedARM64]), else [PrepareARM64]'s. It skips
// when they are neither cached nor downloadable, unless
// METALBOOT_E2E_REQUIRE is set (CI), in which case the test fails.
func NeedARM64Packages(t testing.TB) *ARM64Packages {
	t.Helper()
	NeedARM64(t)
	if p, err := CachedARM64(CacheDir()); err == nil {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := PrepareARM64(ctx, CacheDir())
	if errors.Is(err, ErrNoARM64) && os.Getenv("METALBOOT_E2E_REQUIRE") == "" {
		t.Skipf("e2e: %v (set METALBOOT_E2E_REQUIRE=1 to fail instead)", err)
	}
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	return p
}

// WriteARM64Assets writes the ARM64 kernel of p and an initrd built from
// its arm64 busybox and the kernel's virtio modules into
// assetsDir/arm64/ ([ARM64AssetDir]), where [ProfileARM64ID] boots them.
func WriteARM64Assets(assetsDir string, p *ARM64Packages) (*ARM64Assets, error) {
	dir := filepath.Join(assetsDir, ARM64AssetDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("e2e: %w", err)
	}
	a := &ARM64Assets{Packages: p, Vmlinuz: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.cpio")}
	if err := files.CopyAtomic(p.Kernel.Vmlinuz, a.Vmlinuz); err != nil {
		return nil, fmt.Errorf("e2e: %w", err)
	}
	if err := WriteInitrd(a.Initrd, InitrdConfig{Busybox: p.Busybox, Modules: p.Kernel.Modules}); err != nil {
		return nil, err
	}
	return a, nil
}

// ProfileARM64ID is the profile of ARM64 machines in [WriteDataDir]: the
// kernel and initrd of [WriteARM64Assets], console on the virt
// machine's PL011 (ttyAMA0).
const ProfileARM64ID = "e2e-arm64"

// arm64Profile is the profile ProfileARM64ID.
func arm64Profile() map[string]any {
	return map[string]any{
		"id":   ProfileARM64ID,
		"name": "metalboot e2e: ARM64 kernel and busybox initrd that prints its Ignition config",
		"boot": map[string]any{
			"kernel": "/assets/" + ARM64AssetDir + "/vmlinuz",
			"initrd": []string{"/assets/" + ARM64AssetDir + "/initrd.cpio"},
			"args":   []string{IgnitionParam + "={{.BaseURL}}/ignition?mac={{.MAC}}", "console=ttyAMA0"},
		},
		"ignition_id": IgnitionTemplate,
	}
}

// WrongArchHostname is the hostname in the metadata of the group that
// selects an ARM64 machine by MAC alone (see [WriteDataDir]): a config
// carrying it was matched without the architecture.
func WrongArchHostname(m Machine) string { return "wrong-arch-" + m.Hostname }

// arm64Groups are an ARM64 machine's two groups: {mac, arch: arm64} with
// [ProfileARM64ID] and its hostname, and {mac} alone with the x86-64
// profile and [WrongArchHostname]. The machine boots its own kernel only
// when labserver matched its architecture: from GRUB's arch= on /grub,
// and from the DHCP lease (option 93) on /ignition, whose request names
// none.
func arm64Groups(m Machine) map[string]any {
	name := func(suffix string) string { return filepath.Join("groups", "e2e-"+m.Name+suffix+".json") }
	return map[string]any{
		name(""): map[string]any{
			"id":       "e2e-" + m.Name,
			"name":     "e2e arm64 machine",
			"profile":  ProfileARM64ID,
			"selector": map[string]string{"mac": m.MAC.String(), "arch": "arm64"},
			"metadata": map[string]string{"hostname": m.Hostname, "firmware": string(m.Firmware)},
		},
		name("-any-arch"): map[string]any{
			"id":       "e2e-" + m.Name + "-any-arch",
			"name":     "e2e arm64 machine, matched without its architecture: the x86-64 kernel, which it cannot boot",
			"profile":  ProfileID,
			"selector": map[string]string{"mac": m.MAC.String()},
			"metadata": map[string]string{"hostname": WrongArchHostname(m), "firmware": string(m.Firmware)},
		},
	}
}

// ARM64Machines are the ARM64 machines of the end-to-end test: one
// booting over TFTP with AAVMF's PXE (client architecture 11) and one
// with UEFI HTTP boot (19).
func ARM64Machines() []Machine {
	return []Machine{
		{Name: "arm64", Firmware: ARM64, MAC: hwaddr.MustParse("52:54:00:99:00:41"), Hostname: "arm64.lab", Profile: ProfileARM64ID},
		{Name: "arm64http", Firmware: ARM64, MAC: hwaddr.MustParse("52:54:00:99:00:42"), Hostname: "arm64http.lab", HTTPBoot: true, Profile: ProfileARM64ID},
	}
}

// arm64QEMUArgs are the machine, firmware and NIC options of an ARM64
// machine: virt with a Cortex-A57 (always TCG: there is no ARM64 KVM on
// an x86 host), AAVMF's code read-only and a VARS copy as pflash, the
// NIC without an option ROM (its default ROM holds x86 code), and for
// HTTP boot AAVMF's PXE switched off through fw_cfg, as for OVMF.
func arm64QEMUArgs(cfg VMConfig, vars string) (machine []string, nic string) {
	machine = []string{"-machine", "virt", "-cpu", "cortex-a57",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + AAVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + qemuOpt(vars)}
	if cfg.HTTPBoot {
		machine = append(machine,
			"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
	}
	return machine, ",romfile="
}

// resolveARM64Kernel asks apt which versioned kernel package
// KernelMetaPackageARM64 depends on.
func resolveARM64Kernel(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", KernelMetaPackageARM64+":arm64").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: apt-cache depends %s:arm64: %v: %s%s", ErrNoARM64, KernelMetaPackageARM64, err, bytes.TrimSpace(out), addArchHint(ctx))
	}
	m := depARM64RE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%w: apt-cache depends %s:arm64 names no linux-image-*-cloud-arm64: %s", ErrNoARM64, KernelMetaPackageARM64, bytes.TrimSpace(out))
	}
	return string(m[1]), nil
}

func cachedARM64Kernel(cacheDir string) (*Kernel, error) {
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, "linux-image-*-cloud-arm64"))
	for i := len(dirs) - 1; i >= 0; i-- {
		if k, err := loadKernel(filepath.Base(dirs[i]), dirs[i]); err == nil {
			return k, nil
		}
	}
	return nil, ErrNoARM64
}

// unpackVersioned unpacks pkg:arm64 at apt's candidate version into
// cacheDir/<pkg>_<version>_arm64 (once), or, when apt cannot say the
// version (offline, no arm64 lists), uses the newest such directory that
// check accepts.
func unpackVersioned[T any](ctx context.Context, cacheDir, pkg string, check func(dir string) (T, error)) (T, error) {
	var zero T
	ver, err := candidateARM64(ctx, pkg)
	if err != nil {
		dirs, _ := filepath.Glob(filepath.Join(cacheDir, pkg+"_*_arm64"))
		slices.Sort(dirs)
		for i := len(dirs) - 1; i >= 0; i-- {
			if v, cerr := check(dirs[i]); cerr == nil {
				return v, nil
			}
		}
		return zero, err
	}
	name := pkg + "_" + strings.ReplaceAll(ver, ":", "%3a") + "_arm64"
	return unpackDeb(ctx, cacheDir, name, pkg+":arm64="+ver, ErrNoARM64, archHint(ctx), check)
}

// candidateARM64 is apt's candidate version of pkg:arm64.
func candidateARM64(ctx context.Context, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "policy", pkg+":arm64").CombinedOutput()
	if err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate: "); ok && v != "(none)" {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("%w: apt knows no candidate for %s:arm64: %v %s%s", ErrNoARM64, pkg, err, bytes.TrimSpace(out), addArchHint(ctx))
}

// unpackDeb returns check(cacheDir/name), downloading spec with `apt-get
// download` and unpacking it there with `dpkg-deb -x` first unless it
// already passes. A finished extraction is published by renaming, so
// concurrent runs and interrupted ones never see half a package. A failed
// download wraps errNo, followed by hint() (nil: none).
func unpackDeb[T any](ctx context.Context, cacheDir, name, spec string, errNo error, hint func() string, check func(dir string) (T, error)) (T, error) {
	var zero T
	dir := filepath.Join(cacheDir, name)
	if v, err := check(dir); err == nil {
		return v, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return zero, fmt.Errorf("e2e: cache: %w", err)
	}
	work, err := os.MkdirTemp(cacheDir, ".dl-")
	if err != nil {
		return zero, fmt.Errorf("e2e: cache: %w", err)
	}
	defer os.RemoveAll(work)
	// apt-get download writes into the working directory; -o
	// APT::Sandbox::User=root avoids the _apt permission warning in a
	// root-owned directory.
	dl := exec.CommandContext(ctx, "apt-get", "download", "-o", "APT::Sandbox::User=root", spec)
	dl.Dir = work
	if out, err := dl.CombinedOutput(); err != nil {
		h := ""
		if hint != nil {
			h = hint()
		}
		return zero, fmt.Errorf("%w: apt-get download %s: %v: %s%s", errNo, spec, err, lastLines(string(out), 5), h)
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	if len(debs) != 1 {
		return zero, fmt.Errorf("%w: apt-get download %s produced %d .deb files", errNo, spec, len(debs))
	}
	x := filepath.Join(work, "x")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		return zero, fmt.Errorf("e2e: dpkg-deb -x %s: %v: %s", debs[0], err, bytes.TrimSpace(out))
	}
	if _, err := check(x); err != nil {
		return zero, fmt.Errorf("e2e: %s: %w", spec, err)
	}
	if err := os.Rename(x, dir); err != nil {
		if v, cerr := check(dir); cerr == nil { // a concurrent run won
			return v, nil
		}
		return zero, fmt.Errorf("e2e: cache: %w", err)
	}
	return check(dir)
}

// hasForeignArch reports whether dpkg knows arch as a foreign
// architecture.
func hasForeignArch(ctx context.Context, arch string) bool {
	out, err := exec.CommandContext(ctx, "dpkg", "--print-foreign-architectures").Output()
	return err == nil && slices.Contains(strings.Fields(string(out)), arch)
}

// addArchHint says how to make apt fetch arm64 packages when dpkg does
// not know the architecture.
func addArchHint(ctx context.Context) string {
	if hasForeignArch(ctx, "arm64") {
		return ""
	}
	return " (as root: dpkg --add-architecture arm64 && apt-get update; .ci/test does this)"
}

// archHint is addArchHint, asked only when a download failed.
func archHint(ctx context.Context) func() string {
	return func() string { return addArchHint(ctx) }
}

func statFile(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	return nil
}
