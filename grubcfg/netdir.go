package grubcfg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/metalboot/metalboot/dhcpsrv"
)

// GRUB platforms [MakeNetDir] makes network images for, each with the DHCP
// client architecture whose boot file it is.
const (
	// PlatformBIOS is GRUB for x86 BIOS PXE (Debian grub-pc-bin), the
	// boot file of dhcpsrv.ArchBIOS.
	PlatformBIOS = "i386-pc"
	// PlatformEFIx64 is GRUB for UEFI x86-64 (Debian grub-efi-amd64-bin),
	// the boot file of dhcpsrv.ArchEFIx64 and ArchEFIBC; its modules
	// also serve the UEFI HTTP-boot image.
	PlatformEFIx64 = "x86_64-efi"
	// PlatformEFIARM64 is GRUB for UEFI ARM64 (Debian
	// grub-efi-arm64-bin), the boot file of dhcpsrv.ArchEFIARM64; its
	// modules also serve the ARM64 UEFI HTTP-boot image. On an amd64
	// server the package is not installable; unpack it instead
	// (dpkg --add-architecture arm64; apt-get update; apt-get download
	// grub-efi-arm64-bin:arm64; dpkg -x) and name its
	// usr/lib/grub/arm64-efi in NetDirOptions.PlatformDirs.
	PlatformEFIARM64 = "arm64-efi"
)

// DefaultPlatforms are the platforms MakeNetDir makes when
// NetDirOptions.Platforms is nil, in this order.
var DefaultPlatforms = []string{PlatformBIOS, PlatformEFIx64, PlatformEFIARM64}

// DefaultGrubLibDir holds GRUB's module directories, one per platform
// (Debian: /usr/lib/grub/i386-pc, /usr/lib/grub/x86_64-efi, …).
const DefaultGrubLibDir = "/usr/lib/grub"

// ErrNoGRUB is wrapped by MakeNetDir's error when grub-mknetdir is not
// installed or no requested platform's modules are: the caller may skip
// (tests) or tell the operator which Debian packages to install.
var ErrNoGRUB = errors.New("GRUB not installed")

// platformArch is the DHCP client architecture whose boot file
// (dhcpsrv.DefaultBootFiles) grub-mknetdir's image for a platform is.
var platformArch = map[string]dhcpsrv.Arch{
	PlatformBIOS:     dhcpsrv.ArchBIOS,
	PlatformEFIx64:   dhcpsrv.ArchEFIx64,
	PlatformEFIARM64: dhcpsrv.ArchEFIARM64,
}

// platformHTTPArch is the UEFI HTTP-boot architecture whose boot file
// (the HTTP-boot image, core-http.efi) a platform's modules make.
var platformHTTPArch = map[string]dhcpsrv.Arch{
	PlatformEFIx64:   dhcpsrv.ArchEFIx64HTTP,
	PlatformEFIARM64: dhcpsrv.ArchEFIARM64HTTP,
}

// BootFilePath returns where the boot file that DHCP hands a client of
// architecture arch by default (dhcpsrv.DefaultBootFiles, the one
// definition of the layout) lies in a TFTP root made by [MakeNetDir]: a
// slash-separated path relative to the root. HTTP-boot boot files, which
// DHCP appends to the HTTP base URL, lose their leading "/": the TFTP root
// is served at the root of the HTTP tree (labserver serves it under
// /grub/). It reports false when arch has no default boot file or its
// default is a full URL.
func BootFilePath(arch dhcpsrv.Arch) (string, bool) {
	f, ok := dhcpsrv.DefaultBootFiles[arch]
	if !ok || f == "" || strings.Contains(f, "://") {
		return "", false
	}
	f = strings.TrimPrefix(f, "/")
	if !isRelPath(f) {
		return "", false
	}
	return f, true
}

func isRelPath(p string) bool {
	return p != "" && p[0] != '/' && path.Clean(p) == p && p != "." && !strings.HasPrefix(p, "../")
}

// NetDirOptions configures MakeNetDir. The zero value makes every platform
// installed under DefaultGrubLibDir and no HTTP-boot image.
type NetDirOptions struct {
	// GrubLibDir holds GRUB's module directories, one per platform; ""
	// means DefaultGrubLibDir.
	GrubLibDir string
	// PlatformDirs names the module directory of a platform where it is
	// not GrubLibDir/<platform>, e.g. {PlatformEFIARM64:
	// "/srv/grub-arm64/usr/lib/grub/arm64-efi"} for Debian's
	// grub-efi-arm64-bin unpacked with dpkg -x on an amd64 server. A key
	// that is not a platform is an error; nil means none.
	PlatformDirs map[string]string
	// Platforms lists the platforms to make (PlatformBIOS, PlatformEFIx64,
	// PlatformEFIARM64); nil means DefaultPlatforms. A platform whose
	// module directory is missing is skipped (NetDir.Skipped), not an
	// error; an unknown name is an error.
	Platforms []string
	// HTTPHost is the HTTP server machines reach for UEFI HTTP boot, as
	// "host:port" or a host alone for port 80 (base_url's host). When set,
	// MakeNetDir also makes the UEFI HTTP-boot image (see
	// MakeHTTPBootImage) of each UEFI platform it made (x86_64-efi,
	// arm64-efi), which reads GRUB's modules and first stage from it. ""
	// skips the images.
	HTTPHost string
}

// Skip is something MakeNetDir did not make, and why.
type Skip struct {
	// What names it: a platform, "UEFI HTTP boot image" (x86-64) or
	// "UEFI HTTP boot image (arm64-efi)".
	What string
	// Reason says why, e.g. "/usr/lib/grub/arm64-efi not installed".
	Reason string
}

// String formats the skip as "what: reason".
func (s Skip) String() string { return s.What + ": " + s.Reason }

// NetDir reports what MakeNetDir made.
type NetDir struct {
	// Dir is the TFTP root.
	Dir string
	// Made lists the platforms grub-mknetdir made, in order.
	Made []string
	// HTTPBootImage is the UEFI x86-64 HTTP-boot image, relative to Dir
	// (slash-separated); "" when it was not made.
	HTTPBootImage string
	// HTTPBootImages maps each platform whose UEFI HTTP-boot image was
	// made (x86_64-efi, arm64-efi) to the image, relative to Dir
	// (slash-separated).
	HTTPBootImages map[string]string
	// HTTPHost is the server the HTTP-boot image reads from, with its
	// port ("" when the image was not made).
	HTTPHost string
	// Skipped lists what was not made, and why.
	Skipped []Skip
	// BootFiles maps each client architecture whose default boot file
	// (dhcpsrv.DefaultBootFiles) MakeNetDir made to that file, as
	// BootFilePath gives it: slash-separated, relative to Dir.
	BootFiles map[dhcpsrv.Arch]string
}

// MakeNetDir writes GRUB's network images into dir, a TFTP root, with
// grub-mknetdir (Debian package grub-common), one per platform whose
// modules are installed (under GrubLibDir, or where PlatformDirs says),
// and the UEFI HTTP-boot image of each UEFI platform made when
// opts.HTTPHost is set (MakeHTTPBootImage). Every platform gets the same
// first stage. The files land exactly where
// dhcpsrv's default boot policy points clients (dhcpsrv.DefaultBootFiles,
// see BootFilePath): grub-mknetdir's --subdir is taken from those paths
// (grub/<platform>/core.*), and each boot file is checked to exist
// afterwards. GRUB's prefix becomes (tftp,<next-server>)/grub, so it asks
// for its first stage as grub/grub.cfg-01-<mac>, …, grub/grub.cfg
// (FirstStageTFTP answers those names); no grub.cfg is written.
//
// A platform whose modules are missing is skipped and reported in
// NetDir.Skipped. The error wraps ErrNoGRUB when grub-mknetdir is missing
// or no platform could be made; it wraps ErrBadOption for an unknown
// platform or a bad HTTPHost. Existing files in dir are overwritten.
func MakeNetDir(ctx context.Context, dir string, opts NetDirOptions) (*NetDir, error) {
	lib := opts.GrubLibDir
	if lib == "" {
		lib = DefaultGrubLibDir
	}
	platforms := opts.Platforms
	if platforms == nil {
		platforms = DefaultPlatforms
	}
	subdirs := map[string]string{}
	for _, p := range platforms {
		arch, ok := platformArch[p]
		if !ok {
			return nil, fmt.Errorf("%w: GRUB platform %q (want %s)", ErrBadOption, p, strings.Join(DefaultPlatforms, ", "))
		}
		sub, err := platformSubdir(p, arch)
		if err != nil {
			return nil, err
		}
		subdirs[p] = sub
	}
	for p := range opts.PlatformDirs {
		if _, ok := platformArch[p]; !ok {
			return nil, fmt.Errorf("%w: PlatformDirs: GRUB platform %q (want %s)", ErrBadOption, p, strings.Join(DefaultPlatforms, ", "))
		}
	}
	modDir := func(p string) string {
		if d := opts.PlatformDirs[p]; d != "" {
			return d
		}
		return filepath.Join(lib, p)
	}
	hostport := ""
	if opts.HTTPHost != "" {
		hostport = withPort(opts.HTTPHost)
		if err := checkHostPort(hostport); err != nil {
			return nil, fmt.Errorf("%w: HTTPHost %q: %v", ErrBadOption, opts.HTTPHost, err)
		}
	}
	mknetdir, err := exec.LookPath("grub-mknetdir")
	if err != nil {
		return nil, fmt.Errorf("grubcfg: %w: grub-mknetdir not found (apt-get install grub-common grub-efi-amd64-bin grub-pc-bin)", ErrNoGRUB)
	}

	nd := &NetDir{Dir: dir, BootFiles: map[dhcpsrv.Arch]string{}, HTTPBootImages: map[string]string{}}
	made := map[string]bool{} // files made, slash-separated
	for _, p := range platforms {
		if slices.Contains(nd.Made, p) {
			continue
		}
		mods := modDir(p)
		if _, err := os.Stat(filepath.Join(mods, "modinfo.sh")); err != nil {
			nd.Skipped = append(nd.Skipped, Skip{What: p, Reason: mods + " not installed"})
			continue
		}
		cmd := exec.CommandContext(ctx, mknetdir, "--net-directory="+dir, "--subdir="+subdirs[p], "-d", mods)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("grubcfg: grub-mknetdir for %s: %v: %s", p, err, bytes.TrimSpace(out))
		}
		file, _ := BootFilePath(platformArch[p])
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(file))); err != nil {
			return nil, fmt.Errorf("grubcfg: grub-mknetdir for %s did not make %s, the boot file DHCP hands out: %w", p, file, err)
		}
		nd.Made = append(nd.Made, p)
		made[file] = true
	}
	if len(nd.Made) == 0 {
		reasons := make([]string, len(nd.Skipped))
		for i, s := range nd.Skipped {
			reasons[i] = s.String()
		}
		return nil, fmt.Errorf("grubcfg: %w: no GRUB platform modules under %s (%s): apt-get install grub-efi-amd64-bin grub-pc-bin",
			ErrNoGRUB, lib, strings.Join(reasons, "; "))
	}

	for _, p := range []string{PlatformEFIx64, PlatformEFIARM64} {
		image := "UEFI HTTP boot image"
		if p != PlatformEFIx64 {
			image += " (" + p + ")"
		}
		arch := platformHTTPArch[p]
		switch {
		case !slices.Contains(platforms, p):
			// Not asked for: nothing to say.
		case hostport == "":
			nd.Skipped = append(nd.Skipped, Skip{What: image, Reason: "no HTTP host given"})
		case !slices.Contains(nd.Made, p):
			// The platform's own Skip says why; x86-64's image is
			// named too, as labs expect it.
			if p == PlatformEFIx64 {
				nd.Skipped = append(nd.Skipped, Skip{What: image, Reason: p + " not made"})
			}
		default:
			file, ok := BootFilePath(arch)
			if !ok {
				nd.Skipped = append(nd.Skipped, Skip{What: image, Reason: "dhcpsrv.DefaultBootFiles has no path for " + arch.String()})
				break
			}
			prefix := "/" + subdirs[p]
			if err := makeHTTPBootImage(ctx, modDir(p), filepath.Join(dir, filepath.FromSlash(file)), hostport, prefix); err != nil {
				return nil, err
			}
			if p == PlatformEFIx64 {
				nd.HTTPBootImage = file
			}
			nd.HTTPBootImages[p], nd.HTTPHost = file, hostport
			made[file] = true
		}
	}
	for arch := range dhcpsrv.DefaultBootFiles {
		if f, ok := BootFilePath(arch); ok && made[f] {
			nd.BootFiles[arch] = f
		}
	}
	return nd, nil
}

// platformSubdir checks that the default boot file of arch has
// grub-mknetdir's layout <subdir>/<platform>/<file> and returns subdir.
func platformSubdir(platform string, arch dhcpsrv.Arch) (string, error) {
	file, ok := BootFilePath(arch)
	d := path.Dir(file)
	if !ok || path.Base(d) != platform || path.Dir(d) == "." {
		return "", fmt.Errorf("%w: dhcpsrv.DefaultBootFiles[%s] = %q: grub-mknetdir makes <subdir>/%s/<file>",
			ErrBadOption, arch, dhcpsrv.DefaultBootFiles[arch], platform)
	}
	return path.Dir(d), nil
}

// withPort adds port 80 to a host without one.
func withPort(hp string) string {
	if _, _, err := net.SplitHostPort(hp); err == nil {
		return hp
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]"), "80")
}
