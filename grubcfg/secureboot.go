package grubcfg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/internal/files"
)

// Debian's signed binaries of the UEFI x86-64 Secure Boot chain (Debian 12:
// packages shim-signed, shim-helpers-amd64-signed and
// grub-efi-amd64-signed). shim is signed by Microsoft's third-party UEFI
// CA, which firmware trusts out of the box; it carries Debian's
// certificate and accepts what Debian signed with it: the GRUB image
// and the Debian kernels. Use the shim and GRUB of the distribution whose
// kernel the machines boot.
const (
	DebianShim       = "/usr/lib/shim/shimx64.efi.signed"
	DebianMokManager = "/usr/lib/shim/mmx64.efi.signed"
	// DebianSignedGRUB is Debian's signed network GRUB: its prefix is
	// (tftp,<next-server>)/grub, it reads grub/grub.cfg, and it has no
	// http module (FirstStage.TFTP, TFTPConfigHandler).
	DebianSignedGRUB = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
)

// Names of the Secure Boot chain in the TFTP root. shim 16.1 asks the
// server it came from for grubx64.efi at the TFTP root, whatever directory
// it was loaded from (measured with OVMF), and for mmx64.efi (MokManager)
// when a MOK request is pending; it also probes revocations_sku.efi,
// revocations_sbat.efi and shim_certificate_0.efi, which may be missing.
const (
	ShimName       = "shimx64.efi"
	SignedGRUBName = "grubx64.efi"
	MokManagerName = "mmx64.efi"
)

// ErrNoSecureBoot is wrapped by InstallSecureBoot's error when shim or the
// signed GRUB is not installed.
var ErrNoSecureBoot = errors.New("Secure Boot binaries not installed")

// SecureBootOptions names the signed binaries InstallSecureBoot copies;
// "" means Debian's (DebianShim, DebianSignedGRUB, DebianMokManager).
type SecureBootOptions struct {
	Shim, GRUB, MokManager string
}

// SecureBootFile is one file InstallSecureBoot put into the TFTP root.
type SecureBootFile struct {
	// Name is the file, relative to the TFTP root (slash-separated).
	Name string
	// From is the file it was copied from.
	From string
}

// SecureBoot reports what InstallSecureBoot made.
type SecureBoot struct {
	// Dir is the TFTP root.
	Dir string
	// Files lists the files copied, shim first.
	Files []SecureBootFile
	// BootFiles maps each client architecture whose default shim
	// (dhcpsrv.DefaultShimFiles) was installed to that file.
	BootFiles map[dhcpsrv.Arch]string
	// Skipped lists what was not installed, and why (a missing
	// MokManager: machines then cannot enrol a key over the network).
	Skipped []Skip
}

// InstallSecureBoot copies the UEFI x86-64 Secure Boot chain into dir, a
// TFTP root: shim where dhcpsrv's Secure Boot policy points clients
// (dhcpsrv.DefaultShimFiles: ShimName at the root), the signed network
// GRUB as SignedGRUBName next to it (where shim looks), and MokManager as
// MokManagerName, so a machine that needs a Machine Owner Key enrolled
// (mokutil --import on an installed system, or a key shim asks about)
// can reach MokManager over the network. The signed GRUB reads the same
// first stage as grub-mknetdir's image (grub/grub.cfg, which
// FirstStageTFTP generates); render it with FirstStage.TFTP so that it
// works without HTTP.
//
// The error wraps ErrNoSecureBoot when shim or the signed GRUB is missing
// (apt-get install shim-signed grub-efi-amd64-signed); a missing
// MokManager is only Skipped. Existing files are replaced atomically.
func InstallSecureBoot(dir string, opts SecureBootOptions) (*SecureBoot, error) {
	shim, grub, mm := opts.Shim, opts.GRUB, opts.MokManager
	if shim == "" {
		shim = DebianShim
	}
	if grub == "" {
		grub = DebianSignedGRUB
	}
	if mm == "" {
		mm = DebianMokManager
	}
	shimName := dhcpsrv.DefaultShimFiles[dhcpsrv.ArchEFIx64]
	for _, f := range []string{shim, grub} {
		if st, err := os.Stat(f); err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("grubcfg: %w: %s missing (apt-get install shim-signed grub-efi-amd64-signed)", ErrNoSecureBoot, f)
		}
	}
	sb := &SecureBoot{Dir: dir, BootFiles: map[dhcpsrv.Arch]string{}}
	copies := []SecureBootFile{{shimName, shim}, {SignedGRUBName, grub}}
	if st, err := os.Stat(mm); err != nil || !st.Mode().IsRegular() {
		sb.Skipped = append(sb.Skipped, Skip{What: "MokManager", Reason: mm + " not installed (package shim-helpers-amd64-signed)"})
	} else {
		copies = append(copies, SecureBootFile{MokManagerName, mm})
	}
	for _, c := range copies {
		if err := files.CopyAtomic(c.From, filepath.Join(dir, filepath.FromSlash(c.Name))); err != nil {
			return nil, fmt.Errorf("grubcfg: Secure Boot: %w", err)
		}
		sb.Files = append(sb.Files, c)
	}
	for arch, f := range dhcpsrv.DefaultShimFiles {
		if f == shimName {
			sb.BootFiles[arch] = f
		}
	}
	return sb, nil
}
