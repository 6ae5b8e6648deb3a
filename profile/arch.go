package profile

import (
	"fmt"
	"strings"
)

// CPU architectures a machine's "arch" attribute (KeyArch) may name, in
// the spelling GRUB's $grub_cpu and iPXE's ${buildarch} use. A group
// selects machines by architecture with a selector such as
// {"arch": "arm64"}, so one inventory can send x86-64 and ARM64 machines
// to different kernels.
const (
	// ArchI386 is 32-bit x86, and any x86 machine booting through BIOS
	// PXE or 32-bit UEFI: GRUB for i386-pc reports "i386", and so does
	// iPXE's undionly.kpxe, whatever the CPU can do.
	ArchI386 = "i386"
	// ArchX86_64 is 64-bit x86 UEFI (GRUB x86_64-efi, iPXE ipxe.efi).
	ArchX86_64 = "x86_64"
	// ArchARM is 32-bit ARM UEFI (GRUB arm-efi; iPXE says "arm32").
	ArchARM = "arm"
	// ArchARM64 is 64-bit ARM UEFI (GRUB arm64-efi, iPXE arm64).
	ArchARM64 = "arm64"
	// ArchRISCV64 is 64-bit RISC-V UEFI.
	ArchRISCV64 = "riscv64"
	// ArchLoongArch64 is LoongArch64 UEFI (iPXE says "loong64").
	ArchLoongArch64 = "loongarch64"
)

// Arches lists the canonical architecture names, in the order
// NormalizeArch's error names them.
var Arches = []string{ArchI386, ArchX86_64, ArchARM, ArchARM64, ArchRISCV64, ArchLoongArch64}

// archAliases are other spellings of an architecture (Debian's, the
// kernel's, iPXE's) that NormalizeArch accepts.
var archAliases = map[string]string{
	"amd64":   ArchX86_64,
	"aarch64": ArchARM64,
	"arm32":   ArchARM,
	"loong64": ArchLoongArch64,
}

// NormalizeArch returns the canonical name (one of Arches) of the
// architecture s names: a canonical name, or one of the aliases amd64
// (x86_64), aarch64 (arm64), arm32 (arm) and loong64 (loongarch64), in any
// case. Any other value is an error listing the valid names: an "arch"
// from a request is a closed set, not a free label, so a typo in a group
// selector fails the load and a request with an unknown architecture gets
// 400 instead of silently falling to another group.
func NormalizeArch(s string) (string, error) {
	l := strings.ToLower(s)
	for _, a := range Arches {
		if l == a {
			return a, nil
		}
	}
	if a, ok := archAliases[l]; ok {
		return a, nil
	}
	return "", fmt.Errorf("arch %q: want one of %s (or amd64, aarch64, arm32, loong64)", trunc(s), strings.Join(Arches, ", "))
}
