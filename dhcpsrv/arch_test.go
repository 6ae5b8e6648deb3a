package dhcpsrv_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/metalboot/metalboot/dhcpsrv"
)

// TestArchCPU: every architecture with a default boot file has a CPU
// name, PXE and HTTP boot of one CPU have the same, and unknown
// architectures have none.
func TestArchCPU(t *testing.T) {
	for a, want := range map[dhcpsrv.Arch]string{
		dhcpsrv.ArchBIOS: "i386", dhcpsrv.ArchEFIIA32: "i386",
		dhcpsrv.ArchEFIx64: "x86_64", dhcpsrv.ArchEFIBC: "x86_64", dhcpsrv.ArchEFIx64HTTP: "x86_64",
		dhcpsrv.ArchEFIARM64: "arm64", dhcpsrv.ArchEFIARM64HTTP: "arm64",
		10: "arm", 18: "arm", 27: "riscv64", 28: "riscv64", 39: "loongarch64",
		dhcpsrv.ArchUnknown: "", 1: "", 2: "", 25: "", 41: "",
	} {
		assert.Equal(t, want, a.CPU(), "%s", a)
	}
	for a := range dhcpsrv.DefaultBootFiles {
		assert.NotEmpty(t, a.CPU(), "%s has a default boot file but no CPU name", a)
	}
}
