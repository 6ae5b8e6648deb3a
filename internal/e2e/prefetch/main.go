//go:build linux

// Command prefetch fetches everything the end-to-end tests download (the
// Debian cloud kernel, extracted into the e2e cache, and the arm64
// packages of the ARM64 boot: GRUB's arm64-efi modules, the arm64 cloud
// kernel and busybox-static, unpacked there too), so the test suite can
// then run inside a network namespace of its own with no route out.
// .ci/test runs it before `unshare -n`, after `dpkg --add-architecture
// arm64`.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/metalboot/metalboot/internal/e2e"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	failed := false
	k, err := e2e.PrepareKernel(ctx, e2e.CacheDir())
	if err != nil {
		fmt.Fprintln(os.Stderr, "prefetch:", err)
		failed = true
	} else {
		fmt.Printf("prefetch: kernel %s in %s\n", k.Package, k.Dir)
	}
	a, err := e2e.PrepareARM64(ctx, e2e.CacheDir())
	if err != nil {
		fmt.Fprintln(os.Stderr, "prefetch:", err)
		failed = true
	} else {
		fmt.Printf("prefetch: arm64 kernel %s in %s, GRUB %s, busybox %s\n", a.Kernel.Package, a.Kernel.Dir, a.GrubDir, a.Busybox)
	}
	if failed {
		os.Exit(1)
	}
}
