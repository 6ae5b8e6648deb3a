package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/metalboot/metalboot/grubcfg"
)

// grubDirs is -grub-dir, given once per platform: PLATFORM=DIR names the
// GRUB module directory of a platform that is not installed under
// /usr/lib/grub, e.g. arm64-efi=/srv/grub-arm64/usr/lib/grub/arm64-efi
// for Debian's grub-efi-arm64-bin unpacked with dpkg -x on an amd64
// server (grubcfg.NetDirOptions.PlatformDirs).
type grubDirs map[string]string

func (g grubDirs) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(g)) {
		parts = append(parts, k+"="+g[k])
	}
	return strings.Join(parts, ",")
}

func (g grubDirs) Set(s string) error {
	p, dir, ok := strings.Cut(s, "=")
	if !ok || dir == "" {
		return fmt.Errorf("want PLATFORM=DIR, e.g. %s=/srv/grub-arm64/usr/lib/grub/%s", grubcfg.PlatformEFIARM64, grubcfg.PlatformEFIARM64)
	}
	if !slices.Contains(grubcfg.DefaultPlatforms, p) {
		return fmt.Errorf("platform %q: want one of %s", p, strings.Join(grubcfg.DefaultPlatforms, ", "))
	}
	if _, dup := g[p]; dup {
		return fmt.Errorf("platform %s given twice", p)
	}
	g[p] = dir
	return nil
}
