//go:build linux

// Command prefetch fetches everything the end-to-end tests download (the
// Debian cloud kernel, extracted into the e2e cache), so the test suite can
// then run inside a network namespace of its own with no route out. .ci/test
// runs it before `unshare -n`.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/metalboot/metalboot/internal/e2e"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := e2e.PrepareKernel(ctx, e2e.CacheDir())
	if err != nil {
		fmt.Fprintln(os.Stderr, "prefetch:", err)
		os.Exit(1)
	}
	fmt.Printf("prefetch: kernel %s in %s\n", k.Package, k.Dir)
}
