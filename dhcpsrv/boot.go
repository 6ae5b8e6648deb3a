package dhcpsrv

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Arch is a client system architecture (RFC 4578 option 93, IANA
// "Processor Architecture Types").
type Arch uint16

// Architectures with a default boot file.
const (
	ArchBIOS         Arch = 0  // x86 BIOS (PXE)
	ArchEFIIA32      Arch = 6  // UEFI 32-bit x86
	ArchEFIx64       Arch = 7  // UEFI x86-64
	ArchEFIBC        Arch = 9  // UEFI x86-64 (EFI byte code; firmware sends it for x64)
	ArchEFIARM64     Arch = 11 // UEFI ARM64
	ArchEFIx64HTTP   Arch = 16 // UEFI x86-64 HTTP boot
	ArchEFIARM64HTTP Arch = 19 // UEFI ARM64 HTTP boot
	// ArchUnknown marks a client that sent neither option 93 nor an
	// architecture in option 60.
	ArchUnknown Arch = 0xffff
)

// String returns a short name such as "bios", "efi-x64" or "arch-25".
func (a Arch) String() string {
	switch a {
	case ArchBIOS:
		return "bios"
	case ArchEFIIA32:
		return "efi-ia32"
	case ArchEFIx64:
		return "efi-x64"
	case ArchEFIBC:
		return "efi-bc"
	case ArchEFIARM64:
		return "efi-arm64"
	case ArchEFIx64HTTP:
		return "efi-x64-http"
	case ArchEFIARM64HTTP:
		return "efi-arm64-http"
	case ArchUnknown:
		return "unknown"
	}
	return "arch-" + strconv.Itoa(int(a))
}

// HTTP reports whether a is a UEFI HTTP boot architecture (RFC 4578 /
// IANA types 15–20, 23, 24, 26, 28, 30).
func (a Arch) HTTP() bool {
	switch a {
	case 15, 16, 17, 18, 19, 20, 23, 24, 26, 28, 30:
		return true
	}
	return false
}

// ErrUnknownArch is wrapped by the error ParseArch returns for a name it
// does not know.
var ErrUnknownArch = errors.New("dhcpsrv: unknown architecture name")

// archNames are the names ParseArch takes, in the order its error lists
// them.
var archNames = []struct {
	name   string
	arches []Arch
}{
	{"bios", []Arch{ArchBIOS}},
	{"efi64", []Arch{ArchEFIx64, ArchEFIBC}},
	{"arm64", []Arch{ArchEFIARM64}},
	{"http", []Arch{ArchEFIx64HTTP}},
	{"arm64-http", []Arch{ArchEFIARM64HTTP}},
}

// ParseArch returns the client architectures a configuration file's name
// stands for, so a server's config can say "efi64: grub/x64.efi" instead
// of option 93 numbers:
//
//	"bios"   ArchBIOS (x86 BIOS PXE)
//	"efi64"  ArchEFIx64 and ArchEFIBC (UEFI x86-64 firmware sends either)
//	"arm64"  ArchEFIARM64 (UEFI ARM64)
//	"http"   ArchEFIx64HTTP (UEFI x86-64 HTTP boot)
//	"arm64-http"  ArchEFIARM64HTTP (UEFI ARM64 HTTP boot)
//
// Any other name (matching is exact: lower case, no spaces) is an error
// wrapping [ErrUnknownArch] that lists the valid names.
func ParseArch(name string) ([]Arch, error) {
	valid := make([]string, 0, len(archNames))
	for _, a := range archNames {
		if a.name == name {
			return append([]Arch(nil), a.arches...), nil
		}
		valid = append(valid, a.name)
	}
	return nil, fmt.Errorf("%w %q (valid names: %s)", ErrUnknownArch, name, strings.Join(valid, ", "))
}

// BootFilesByName returns DefaultBootFiles with the boot file of every
// architecture named in byName (names as ParseArch takes them) replaced
// by its value: the BootPolicy.Files of a configuration file's
// "boot_files" map. Unknown names are errors (all of them, joined).
func BootFilesByName(byName map[string]string) (map[Arch]string, error) {
	files := make(map[Arch]string, len(DefaultBootFiles))
	for k, v := range DefaultBootFiles {
		files[k] = v
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		file := byName[name]
		arches, err := ParseArch(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, a := range arches {
			files[a] = file
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return files, nil
}

// DefaultBootFiles is the boot file per architecture used when
// BootPolicy.Files is nil: paths relative to the TFTP root made by
// grub-mknetdir, and for HTTP boot paths appended to BootPolicy.HTTPBase.
// UEFI HTTP boot (x86-64 and ARM64) gets core-http.efi, a GRUB image that
// configures its network itself (grubcfg.MakeHTTPBootImage; GRUB 2.06's
// core.efi finds no network settings after an HTTP boot).
var DefaultBootFiles = map[Arch]string{
	ArchBIOS:         "grub/i386-pc/core.0",
	ArchEFIx64:       "grub/x86_64-efi/core.efi",
	ArchEFIBC:        "grub/x86_64-efi/core.efi",
	ArchEFIARM64:     "grub/arm64-efi/core.efi",
	ArchEFIx64HTTP:   "/grub/x86_64-efi/core-http.efi",
	ArchEFIARM64HTTP: "/grub/arm64-efi/core-http.efi",
}

// DefaultIPXEFiles is the iPXE binary per architecture a client that is
// to boot with iPXE but does not run it yet is handed, when
// BootPolicy.IPXEFiles is nil: paths relative to the TFTP root, where
// labserver -make-tftp-root copies Debian's (package ipxe) undionly.kpxe
// (BIOS: iPXE over the NIC's PXE stack) and ipxe.efi (UEFI x86-64).
// Architectures without an entry (HTTP boot, ARM64) get their Files entry.
var DefaultIPXEFiles = map[Arch]string{
	ArchBIOS:   "ipxe/undionly.kpxe",
	ArchEFIx64: "ipxe/ipxe.efi",
	ArchEFIBC:  "ipxe/ipxe.efi",
}

// Loader is the boot loader a client is to run, as BootPolicy.Loader
// chooses it.
type Loader uint8

// Boot loaders.
const (
	// LoaderGRUB: the client gets its architecture's Files entry (GRUB's
	// network images by default), whatever firmware it runs, iPXE
	// included.
	LoaderGRUB Loader = iota
	// LoaderIPXE: a client that runs iPXE already (user class "iPXE" or
	// option 175: an iPXE option ROM, or the iPXE binary it was handed)
	// gets IPXEScript; any other gets the iPXE binary for its
	// architecture (IPXEFiles), which then asks again as iPXE. A client
	// is never handed the binary it runs, so there is no chainload loop.
	LoaderIPXE
	// LoaderShim: UEFI Secure Boot. A client gets its architecture's
	// ShimFiles entry (shim, signed by Microsoft's UEFI CA, which loads
	// the distribution-signed GRUB next to it); architectures without
	// one (BIOS, HTTP boot) get their Files entry.
	LoaderShim
)

// String returns "grub", "ipxe" or "shim".
func (l Loader) String() string {
	switch l {
	case LoaderIPXE:
		return "ipxe"
	case LoaderShim:
		return "shim"
	}
	return "grub"
}

// DefaultShimFiles is the Secure Boot first stage per architecture a
// client chosen for LoaderShim gets when BootPolicy.ShimFiles is nil: a
// path relative to the TFTP root, where grubcfg.InstallSecureBoot puts
// Debian's shim (package shim-signed). shim then asks the same server for
// grubx64.efi at the root (shim 16.1 does, whatever directory it came
// from), the distribution-signed GRUB.
var DefaultShimFiles = map[Arch]string{
	ArchEFIx64: "shimx64.efi",
	ArchEFIBC:  "shimx64.efi",
}

// BootPolicy chooses the boot file a network-booting client is told to load.
// The zero value uses DefaultBootFiles and no HTTP boot (HTTPBase empty),
// for every client (LoaderGRUB).
type BootPolicy struct {
	// Files maps a client architecture to its boot file (nil:
	// DefaultBootFiles). For HTTP-boot architectures a value without
	// "://" is appended to HTTPBase.
	Files map[Arch]string
	// HTTPBase is the URL prefix for HTTP boot, e.g.
	// "http://10.99.0.1:8080". Empty: HTTP-boot clients get no boot file
	// unless Files holds a full URL for their architecture.
	HTTPBase string
	// Disabled turns boot options off: clients only get an address.
	Disabled bool
	// Loader, when set, chooses each network-booting client's boot
	// loader, by its MAC and what it sent (e.g. from the group the
	// inventory puts it in); nil means LoaderGRUB for every client. It is
	// called on the packet's goroutine with the packet's context, for
	// every DISCOVER, REQUEST and INFORM that gets boot options: it must
	// answer from memory, and be safe for concurrent use. LoaderIPXE
	// needs IPXEScript (Validate says so).
	Loader func(ctx context.Context, mac hwaddr.MAC, ci ClientInfo) Loader
	// IPXEScript is the boot file of a client that runs iPXE and is to
	// boot with it: the URL of the script it fetches (labserver's
	// /boot.ipxe, e.g. "http://10.99.0.1:8080/boot.ipxe"), iPXE taking
	// a URL as its file name.
	IPXEScript string
	// IPXEFiles maps an architecture to the iPXE binary a client that is
	// to boot with iPXE but does not run it yet gets over TFTP (nil:
	// DefaultIPXEFiles). An architecture without one gets its Files
	// entry.
	IPXEFiles map[Arch]string
	// ShimFiles maps an architecture to the Secure Boot first stage
	// (shim) a client chosen for LoaderShim gets over TFTP (nil:
	// DefaultShimFiles). An architecture without one gets its Files
	// entry.
	ShimFiles map[Arch]string
}

// BootFile returns the boot file for arch, whether it is an HTTP URL, and
// whether there is one at all.
func (p BootPolicy) BootFile(arch Arch) (file string, http bool, ok bool) {
	if p.Disabled {
		return "", false, false
	}
	files := p.Files
	if files == nil {
		files = DefaultBootFiles
	}
	f, ok := files[arch]
	if !ok || f == "" {
		return "", false, false
	}
	if !arch.HTTP() {
		return f, false, true
	}
	if strings.Contains(f, "://") {
		return f, true, true
	}
	if p.HTTPBase == "" {
		return "", true, false
	}
	return strings.TrimSuffix(p.HTTPBase, "/") + "/" + strings.TrimPrefix(f, "/"), true, true
}

// bootFileFor is BootFile for one client: its Loader's choice first.
func (p BootPolicy) bootFileFor(ctx context.Context, mac hwaddr.MAC, ci ClientInfo) (file string, http bool, ok bool) {
	if p.Disabled {
		return "", false, false
	}
	var loader Loader
	if p.Loader != nil {
		loader = p.Loader(ctx, mac, ci)
	}
	if loader == LoaderShim {
		files := p.ShimFiles
		if files == nil {
			files = DefaultShimFiles
		}
		if f := files[ci.Arch]; f != "" {
			return f, false, true
		}
	}
	if loader == LoaderIPXE && p.IPXEScript != "" {
		if ci.IPXE {
			return p.IPXEScript, false, true
		}
		files := p.IPXEFiles
		if files == nil {
			files = DefaultIPXEFiles
		}
		if f := files[ci.Arch]; f != "" {
			return f, false, true
		}
	}
	return p.BootFile(ci.Arch)
}

// ClientInfo is what a request says about a network-booting client.
type ClientInfo struct {
	// Arch from option 93, else from option 60's "Arch:xxxxx", else
	// ArchUnknown.
	Arch Arch
	// VendorClass is option 60 as sent.
	VendorClass string
	// PXE is true when option 60 starts with "PXEClient".
	PXE bool
	// HTTPClient is true when option 60 starts with "HTTPClient" (UEFI
	// HTTP boot).
	HTTPClient bool
	// IPXE is true for iPXE (user class "iPXE" or option 175 present).
	IPXE bool
	// UUID is option 97 (client machine identifier): the SMBIOS UUID in
	// its usual text form (as dmidecode prints it), "" if absent.
	UUID string
}

// NetBoot reports whether the client asked to boot from the network.
func (c ClientInfo) NetBoot() bool { return c.PXE || c.HTTPClient || c.Arch != ArchUnknown }

// ParseClientInfo extracts the network-boot facts from a request.
func ParseClientInfo(req *dhcpv4.DHCPv4) ClientInfo {
	ci := ClientInfo{Arch: ArchUnknown, VendorClass: req.ClassIdentifier()}
	ci.PXE = strings.HasPrefix(ci.VendorClass, "PXEClient")
	ci.HTTPClient = strings.HasPrefix(ci.VendorClass, "HTTPClient")
	if v := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(v) >= 2 {
		ci.Arch = Arch(binary.BigEndian.Uint16(v))
	} else if i := strings.Index(ci.VendorClass, ":Arch:"); i >= 0 && len(ci.VendorClass) >= i+11 {
		if n, err := strconv.ParseUint(ci.VendorClass[i+6:i+11], 10, 16); err == nil {
			ci.Arch = Arch(n)
		}
	}
	if ci.Arch == ArchUnknown && ci.HTTPClient {
		ci.Arch = ArchEFIx64HTTP
	}
	if req.Options.Has(dhcpv4.GenericOptionCode(175)) {
		ci.IPXE = true
	}
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			ci.IPXE = true
		}
	}
	ci.UUID = formatUUID(req.Options.Get(dhcpv4.OptionClientMachineIdentifier))
	return ci
}

// formatUUID renders option 97. Type 0 followed by 16 bytes is the SMBIOS
// system UUID, which firmware (OVMF, SeaBIOS/iPXE, verified under QEMU
// with -uuid) sends as stored: the first three fields little-endian. It is
// printed the way dmidecode, BMCs, QEMU's -uuid and iPXE's ${uuid} show
// it. Anything else is printed as hex, except a value longer than one
// option (255 bytes, reachable by splitting option 97), which is no
// identifier and gives "". The result always passes ValidUUID.
func formatUUID(b []byte) string {
	if len(b) == 0 || len(b) > 255 {
		return ""
	}
	if len(b) == 17 && b[0] == 0 {
		u := b[1:]
		return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
			u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6], u[8:10], u[10:16])
	}
	return hex.EncodeToString(b)
}
