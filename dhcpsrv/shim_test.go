package dhcpsrv_test

import (
	"context"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// TestLoaderShim: a client the Loader puts on the Secure Boot chain gets
// shim for its architecture (UEFI x86-64, whether it says 7 or 9); BIOS,
// ARM64 without a shim entry and HTTP boot keep their Files entry; the
// caller's ShimFiles replace the defaults; other clients are untouched.
func TestLoaderShim(t *testing.T) {
	sbMAC := hwaddr.MAC(mac(1))
	s, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Boot.HTTPBase = "http://10.99.0.1:8080"
		s.Boot.IPXEScript = bootIPXE
		s.Boot.Loader = func(_ context.Context, m hwaddr.MAC, _ dhcpsrv.ClientInfo) dhcpsrv.Loader {
			if m == sbMAC {
				return dhcpsrv.LoaderShim
			}
			return dhcpsrv.LoaderGRUB
		}
	})
	require.NoError(t, s.Validate())
	pxe := func(arch iana.Arch, vendor string) []dhcpv4.Modifier {
		return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(arch)), dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendor))}
	}
	for _, c := range []struct {
		name string
		mac  int
		mods []dhcpv4.Modifier
		file string
	}{
		{"Secure Boot, UEFI x64 (7)", 1, pxe(iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003016"), "shimx64.efi"},
		{"Secure Boot, UEFI x64 (9)", 1, pxe(iana.EFI_BC, "PXEClient:Arch:00009:UNDI:003016"), "shimx64.efi"},
		{"Secure Boot, BIOS: GRUB's image", 1, pxe(iana.INTEL_X86PC, "PXEClient:Arch:00000:UNDI:002001"), "grub/i386-pc/core.0"},
		{"Secure Boot, ARM64: no shim entry", 1, pxe(iana.EFI_ARM64, "PXEClient:Arch:00011:UNDI:003016"), "grub/arm64-efi/core.efi"},
		{"Secure Boot, HTTP boot", 1, pxe(iana.EFI_X86_64_HTTP, "HTTPClient:Arch:00016:UNDI:003001"), "http://10.99.0.1:8080/grub/x86_64-efi/core-http.efi"},
		{"GRUB machine, UEFI x64", 2, pxe(iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003016"), "grub/x86_64-efi/core.efi"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ack := dora(t, s, mac(c.mac), c.mods...)
			assert.Equal(t, c.file, ack.BootFileName, "file field")
			assert.Equal(t, c.file, ack.BootFileNameOption(), "option 67")
		})
	}

	custom, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Boot.IPXEScript = bootIPXE
		s.Boot.ShimFiles = map[dhcpsrv.Arch]string{dhcpsrv.ArchEFIx64: "sb/shimx64.efi"}
		s.Boot.Loader = func(context.Context, hwaddr.MAC, dhcpsrv.ClientInfo) dhcpsrv.Loader { return dhcpsrv.LoaderShim }
	})
	assert.Equal(t, "sb/shimx64.efi", dora(t, custom, mac(5), pxe(iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003016")...).BootFileName)
	assert.Equal(t, "grub/x86_64-efi/core.efi", dora(t, custom, mac(6), pxe(iana.EFI_BC, "PXEClient:Arch:00009:UNDI:003016")...).BootFileName,
		"no shim for arch 9 in the caller's map")
	assert.Equal(t, "shim", dhcpsrv.LoaderShim.String())
}
