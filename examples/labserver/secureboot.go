package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/tftpsrv"
)

// secureBootKey is the group metadata key (true or false) that puts its
// machines on the Secure Boot chain or takes them off it, overriding the
// lab's secure_boot.
const secureBootKey = "secure_boot"

// assetsTFTPDir is where the assets directory appears in the TFTP tree,
// for GRUB images without HTTP (grubcfg.DefaultTFTPDir: /assets/x over
// HTTP is assets/x over TFTP).
const assetsTFTPDir = grubcfg.DefaultTFTPDir

// groupSecureBoot reports whether machines of g (nil: the lab's) boot
// through shim when they are UEFI x86-64 machines booting with GRUB: the
// group's "secure_boot" metadata, else the lab's secure_boot. A value
// that is not a boolean stops the load (checkSecureBoot).
func (l *lab) groupSecureBoot(g *profile.Group) bool {
	if g != nil {
		if v, ok := g.Metadata[secureBootKey].(bool); ok {
			return v
		}
	}
	return l.s.SecureBoot
}

// tftpFiles is how a GRUB without HTTP reaches the assets: over TFTP at
// assets/, the same files /assets/ serves.
func (l *lab) tftpFiles() *grubcfg.TFTPFiles {
	return &grubcfg.TFTPFiles{Dir: assetsTFTPDir, HTTPHost: l.s.BaseURL.Host}
}

// checkSecureBoot is the part of checkInventory for Secure Boot: a
// "secure_boot" that is not a boolean, a group that would boot iPXE under
// Secure Boot (Debian's iPXE is not signed), and a profile a Secure Boot
// machine's GRUB cannot boot (it has no http: kernel and initrds must be
// under /assets/, which TFTP serves too) stop the load, naming the file.
func (l *lab) checkSecureBoot(inv *profile.Inventory) []error {
	var errs []error
	sb := map[*profile.Group]bool{}
	for _, g := range inv.Groups() {
		if v, ok := g.Metadata[secureBootKey]; ok {
			if _, isBool := v.(bool); !isBool {
				errs = append(errs, fmt.Errorf("%w: %s: group %q: metadata %s: %v: want true or false", profile.ErrInvalid, g.Source, g.ID, secureBootKey, v))
				continue
			}
		}
		if !l.groupSecureBoot(g) {
			continue
		}
		if l.groupLoader(g) == loaderIPXE {
			if _, explicit := g.Metadata[secureBootKey]; explicit {
				errs = append(errs, fmt.Errorf("%w: %s: group %q: secure_boot with boot_loader ipxe: iPXE's binaries here are not signed; Secure Boot machines boot shim → signed GRUB (boot_loader grub)", profile.ErrInvalid, g.Source, g.ID))
			}
			continue // the lab's secure_boot applies to GRUB machines only
		}
		sb[g] = true
	}
	for _, p := range grubcfg.CheckTFTP(inv, *l.tftpFiles(), func(g *profile.Group) bool { return sb[g] }) {
		errs = append(errs, fmt.Errorf("%w: %s (its machines boot with Secure Boot: the signed GRUB has no http, so kernel and initrds must be under /assets/, which TFTP serves as %s/)",
			profile.ErrInvalid, p.Error(), assetsTFTPDir))
	}
	return errs
}

// tftpConfig answers the per-machine configuration over TFTP
// (grub?mac=…, which the first stage asks for when GRUB has no http, as
// Debian's signed GRUB under Secure Boot): the /grub handler's selection,
// install state, timeline and error answers, with kernel and initrds over
// TFTP.
func (l *lab) tftpConfig() tftpsrv.Handler {
	opts := l.grubOptions()
	opts.TFTP = l.tftpFiles()
	return &grubcfg.TFTPConfigHandler{Handler: l.newGrubHandler(opts)}
}

// mountAssetsTFTP serves the assets directory inside the TFTP tree at
// assets/ (tftpsrv.Mount), with the same link policy as /assets/
// (ownerLinkFS), so GRUB without http can load kernels and initrds.
func (l *lab) mountAssetsTFTP(root fs.FS) (fs.FS, error) {
	if l.s.Assets == "" {
		return root, nil
	}
	assets, err := newOwnerLinkFS(l.s.Assets)
	if err != nil {
		return nil, fmt.Errorf("assets: %w", err)
	}
	return tftpsrv.Mount(root, assetsTFTPDir, assets)
}

// tftpAssetEvent names a TFTP transfer from the assets tree on the
// timeline as /assets/ fetches are named: kernel, initrd or asset.
func (l *lab) tftpAssetEvent(ip netip.Addr, name string) {
	if !strings.HasPrefix(name, assetsTFTPDir+"/") {
		return
	}
	p := "/" + name
	l.metrics.stages.WithLabelValues(stageAsset).Inc()
	l.timeline.recordIP(ip, l.timeline.assetStage(ip, p), p+" (tftp)")
}

// installSecureBoot copies the Secure Boot chain (Debian's signed shim,
// GRUB and MokManager) into the TFTP root dir, saying which files it
// used; without the packages it says what to install and goes on.
func installSecureBoot(dir string, out io.Writer) error {
	sb, err := grubcfg.InstallSecureBoot(dir, grubcfg.SecureBootOptions{})
	if errors.Is(err, grubcfg.ErrNoSecureBoot) {
		fmt.Fprintf(out, "skip Secure Boot chain: %v (only machines with secure_boot need it)\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	for _, f := range sb.Files {
		fmt.Fprintf(out, "Secure Boot: %s from %s\n", filepath.Join(dir, filepath.FromSlash(f.Name)), f.From)
	}
	for _, s := range sb.Skipped {
		fmt.Fprintf(out, "skip %s\n", s)
	}
	return nil
}
