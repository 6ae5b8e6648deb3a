//go:build linux

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// KernelMetaPackage is the Debian metapackage whose versioned dependency
// (linux-image-<version>-cloud-amd64) provides the test kernel: a small
// kernel with virtio drivers as modules.
const KernelMetaPackage = "linux-image-cloud-amd64"

// DefaultCacheDir is where [PrepareKernel] keeps extracted kernels between
// runs unless the METALBOOT_E2E_CACHE environment variable names another
// directory.
const DefaultCacheDir = "/var/cache/metalboot-e2e"

// ErrNoKernel is returned when no Debian kernel package can be resolved or
// downloaded (for example, without network access to a Debian mirror).
var ErrNoKernel = errors.New("e2e: no Debian cloud kernel available")

// Kernel is a Debian kernel extracted (not installed) into a cache directory.
type Kernel struct {
	// Package is the versioned Debian package, e.g.
	// linux-image-6.1.0-56-cloud-amd64.
	Package string
	// Dir is the extraction root (dpkg-deb -x output).
	Dir string
	// Vmlinuz is the path of the kernel image.
	Vmlinuz string
	// Modules are the .ko files of [VirtioModules], in load order.
	Modules []string
	// EFIModules are the .ko files of [EFIModules] the package has
	// (efivarfs: the initrd reads the SecureBoot variable through it).
	EFIModules []string
}

// CacheDir returns METALBOOT_E2E_CACHE or [DefaultCacheDir].
func CacheDir() string {
	if d := os.Getenv("METALBOOT_E2E_CACHE"); d != "" {
		return d
	}
	return DefaultCacheDir
}

var depRE = regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-[0-9][^\s]*-cloud-amd64)\s*$`)

// ResolveKernelPackage asks apt which versioned kernel package
// [KernelMetaPackage] depends on.
func ResolveKernelPackage(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", KernelMetaPackage).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: apt-cache depends %s: %v: %s", ErrNoKernel, KernelMetaPackage, err, bytes.TrimSpace(out))
	}
	m := depRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%w: apt-cache depends %s names no linux-image-*-cloud-amd64: %s", ErrNoKernel, KernelMetaPackage, bytes.TrimSpace(out))
	}
	return string(m[1]), nil
}

// PrepareKernel returns the Debian cloud kernel extracted under cacheDir,
// downloading it with `apt-get download` and extracting it with
// `dpkg-deb -x` on first use (nothing is installed; when apt knows no such
// package or the download fails, it runs `apt-get update` once and retries). An extraction is
// published by renaming a finished directory, so concurrent callers and
// interrupted runs never see half a kernel.
func PrepareKernel(ctx context.Context, cacheDir string) (*Kernel, error) {
	k, err := prepareKernel(ctx, cacheDir)
	if errors.Is(err, ErrNoKernel) {
		// Container images often ship without apt lists: refresh them
		// once and retry.
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			return nil, fmt.Errorf("%w (apt-get update: %v: %s)", err, uerr, lastLines(string(out), 3))
		}
		k, err = prepareKernel(ctx, cacheDir)
	}
	return k, err
}

func prepareKernel(ctx context.Context, cacheDir string) (*Kernel, error) {
	pkg, err := ResolveKernelPackage(ctx)
	if err != nil {
		// Offline but cached: use whatever extraction is there.
		if k, cerr := cachedKernel(cacheDir); cerr == nil {
			return k, nil
		}
		return nil, err
	}
	return unpackDeb(ctx, cacheDir, pkg, pkg, ErrNoKernel, nil, func(dir string) (*Kernel, error) { return loadKernel(pkg, dir) })
}

func cachedKernel(cacheDir string) (*Kernel, error) {
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, "linux-image-*-cloud-amd64"))
	for i := len(dirs) - 1; i >= 0; i-- {
		if k, err := loadKernel(filepath.Base(dirs[i]), dirs[i]); err == nil {
			return k, nil
		}
	}
	return nil, ErrNoKernel
}

func loadKernel(pkg, dir string) (*Kernel, error) {
	vm, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(vm) != 1 {
		return nil, fmt.Errorf("%w: %s: expected one boot/vmlinuz-*, found %d", ErrNoKernel, dir, len(vm))
	}
	version := strings.TrimPrefix(filepath.Base(vm[0]), "vmlinuz-")
	modRoot := filepath.Join(dir, "lib", "modules", version, "kernel")
	found := map[string]string{}
	err := filepath.WalkDir(modRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			found[strings.TrimSuffix(d.Name(), ".ko")] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoKernel, modRoot, err)
	}
	k := &Kernel{Package: pkg, Dir: dir, Vmlinuz: vm[0]}
	for _, m := range VirtioModules {
		p, ok := found[m]
		if !ok {
			return nil, fmt.Errorf("%w: %s: module %s.ko not found (compressed modules are not supported)", ErrNoKernel, modRoot, m)
		}
		k.Modules = append(k.Modules, p)
	}
	for _, m := range EFIModules {
		if p, ok := found[m]; ok {
			k.EFIModules = append(k.EFIModules, p)
		}
	}
	return k, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
