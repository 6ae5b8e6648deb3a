package dhcpsrv

// CPU returns the CPU architecture a client of architecture a runs, in
// the spelling GRUB's $grub_cpu and iPXE's ${buildarch} use (what
// profile.NormalizeArch takes): "i386" for x86 BIOS (0) and 32-bit x86
// UEFI (6, 15), "x86_64" for x86-64 UEFI (7, 9, 16), "arm" for 32-bit ARM
// UEFI (10, 18), "arm64" for ARM64 UEFI (11, 19), "riscv64" for 64-bit
// RISC-V UEFI (27, 28), "loongarch64" for LoongArch64 UEFI (39, 40); ""
// for any other value, ArchUnknown included. BIOS is "i386" whatever the
// CPU can do, as GRUB (i386-pc) and iPXE (undionly.kpxe) report it, so a
// request's arch= and the lease's agree.
func (a Arch) CPU() string {
	switch a {
	case ArchBIOS, ArchEFIIA32, 15:
		return "i386"
	case ArchEFIx64, ArchEFIBC, ArchEFIx64HTTP:
		return "x86_64"
	case 10, 18:
		return "arm"
	case ArchEFIARM64, ArchEFIARM64HTTP:
		return "arm64"
	case 27, 28:
		return "riscv64"
	case 39, 40:
		return "loongarch64"
	}
	return ""
}
