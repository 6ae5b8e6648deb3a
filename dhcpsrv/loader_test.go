package dhcpsrv_test

import (
	"context"
	"errors"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

const bootIPXE = "http://10.99.0.1:8080/boot.ipxe"

// TestLoaderChoosesBootFile: per client, Loader picks GRUB or iPXE; a
// client that runs iPXE already gets the script's URL, any other the iPXE
// binary for its architecture (which then asks as iPXE), so no client is
// ever handed the binary it runs; GRUB clients get GRUB's images whatever
// firmware they run, iPXE ROMs included; architectures without an iPXE
// binary fall back to their GRUB image.
func TestLoaderChoosesBootFile(t *testing.T) {
	ipxeMAC := hwaddr.MAC(mac(1))
	var asked []hwaddr.MAC
	s, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Boot.HTTPBase = "http://10.99.0.1:8080"
		s.Boot.IPXEScript = bootIPXE
		s.Boot.Loader = func(_ context.Context, m hwaddr.MAC, ci dhcpsrv.ClientInfo) dhcpsrv.Loader {
			asked = append(asked, m)
			if m == ipxeMAC || m == hwaddr.MAC(mac(3)) || m == hwaddr.MAC(mac(4)) {
				return dhcpsrv.LoaderIPXE
			}
			return dhcpsrv.LoaderGRUB
		}
	})
	require.NoError(t, s.Validate())
	pxe := func(arch iana.Arch, vendor string) []dhcpv4.Modifier {
		return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(arch)), dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendor))}
	}
	ipxe := func(mods []dhcpv4.Modifier) []dhcpv4.Modifier {
		return append(mods, dhcpv4.WithUserClass("iPXE", false))
	}
	bios := pxe(iana.INTEL_X86PC, "PXEClient:Arch:00000:UNDI:002001")
	efi := pxe(iana.EFI_X86_64, "PXEClient:Arch:00007:UNDI:003016")
	for _, c := range []struct {
		name string
		mac  int
		mods []dhcpv4.Modifier
		file string
	}{
		{"iPXE loader, BIOS PXE firmware: the iPXE binary", 1, bios, "ipxe/undionly.kpxe"},
		{"iPXE loader, UEFI firmware: the iPXE binary", 1, efi, "ipxe/ipxe.efi"},
		{"iPXE loader, iPXE running (BIOS ROM): the script", 1, ipxe(bios), bootIPXE},
		{"iPXE loader, iPXE running (ipxe.efi): the script, not ipxe.efi again", 1, ipxe(efi), bootIPXE},
		{"GRUB loader, iPXE ROM: GRUB's image", 2, ipxe(bios), "grub/i386-pc/core.0"},
		{"GRUB loader, UEFI firmware", 2, efi, "grub/x86_64-efi/core.efi"},
		{"iPXE loader, ARM64: no iPXE binary, GRUB's image", 3, pxe(iana.EFI_ARM64, "PXEClient:Arch:00011:UNDI:003016"), "grub/arm64-efi/core.efi"},
		{"iPXE loader, HTTP boot: GRUB's HTTP image", 4, pxe(iana.EFI_X86_64_HTTP, "HTTPClient:Arch:00016:UNDI:003001"), "http://10.99.0.1:8080/grub/x86_64-efi/core-http.efi"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ack := dora(t, s, mac(c.mac), c.mods...)
			assert.Equal(t, c.file, ack.BootFileName, "file field")
			assert.Equal(t, c.file, ack.BootFileNameOption(), "option 67")
			if c.file == bootIPXE {
				assert.Equal(t, []byte{176, 1, 1}, ack.GetOneOption(dhcpv4.GenericOptionCode(175)), "no-pxedhcp")
			}
		})
	}
	assert.NotEmpty(t, asked)

	// proxyDHCP: the same choice.
	p, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.ProxyDHCP = true
		s.Boot.IPXEScript = bootIPXE
		s.Boot.Loader = func(context.Context, hwaddr.MAC, dhcpsrv.ClientInfo) dhcpsrv.Loader { return dhcpsrv.LoaderIPXE }
	})
	o := p.Reply(ctx, discover(t, mac(9), efi...))
	require.NotNil(t, o)
	assert.Equal(t, "ipxe/ipxe.efi", o.BootFileName)
	o = p.Reply(ctx, discover(t, mac(9), ipxe(efi)...))
	require.NotNil(t, o)
	assert.Equal(t, bootIPXE, o.BootFileName)

	// Custom binaries.
	c, _ := newServer(t, func(s *dhcpsrv.Server) {
		s.Boot.IPXEScript = bootIPXE
		s.Boot.IPXEFiles = map[dhcpsrv.Arch]string{dhcpsrv.ArchBIOS: "undionly.kpxe"}
		s.Boot.Loader = func(context.Context, hwaddr.MAC, dhcpsrv.ClientInfo) dhcpsrv.Loader { return dhcpsrv.LoaderIPXE }
	})
	assert.Equal(t, "undionly.kpxe", dora(t, c, mac(5), bios...).BootFileName)
	assert.Equal(t, "grub/x86_64-efi/core.efi", dora(t, c, mac(6), efi...).BootFileName, "no binary for UEFI in the caller's map")
}

func TestLoaderValidate(t *testing.T) {
	for script, ok := range map[string]bool{
		"":                           false,
		bootIPXE:                     true,
		"tftp://10.99.0.1/boot.ipxe": true,
		"boot.ipxe":                  false,
		"http://x/a b":               false,
		"http://10.99.0.1:8080/" + string(make([]byte, 120)): false,
	} {
		s, _ := newServer(t, func(s *dhcpsrv.Server) {
			s.Boot.IPXEScript = script
			s.Boot.Loader = func(context.Context, hwaddr.MAC, dhcpsrv.ClientInfo) dhcpsrv.Loader { return dhcpsrv.LoaderIPXE }
		})
		err := s.Validate()
		if ok {
			assert.NoError(t, err, "%q", script)
		} else {
			assert.True(t, errors.Is(err, dhcpsrv.ErrConfig), "%q: %v", script, err)
		}
	}
	assert.Equal(t, "ipxe", dhcpsrv.LoaderIPXE.String())
	assert.Equal(t, "grub", dhcpsrv.LoaderGRUB.String())
}
