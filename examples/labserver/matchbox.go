package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/grubcfg"
	"github.com/metalboot/metalboot/grubcfg/ipxe"
	"github.com/metalboot/metalboot/ignition"
	"github.com/metalboot/metalboot/profile"
)

// Timeline stages of matchbox's other endpoints.
const (
	stageIPXEBoot = "ipxe-boot" // /boot.ipxe fetched (by address: the machine is not named yet)
	stageIPXE     = "ipxe"      // /ipxe served the machine's script
	stageGeneric  = "generic"
	stageMetadata = "metadata"
)

// Boot loaders, as profile.LoaderProblem names them.
const (
	loaderGRUB = "GRUB"
	loaderIPXE = "iPXE"
)

// loaderKey is the group metadata key that chooses its machines' boot
// loader ("grub" or "ipxe"), overriding the lab's boot_loader.
const loaderKey = "boot_loader"

// parseLoader reads a boot_loader value: "grub" (or "") or "ipxe".
func parseLoader(s string) (string, error) {
	switch s {
	case "", "grub":
		return loaderGRUB, nil
	case "ipxe":
		return loaderIPXE, nil
	}
	return "", fmt.Errorf("%q: want grub or ipxe", s)
}

// groupLoader is the boot loader machines of g boot with: the group's
// "boot_loader" metadata, else the lab's (g nil: the lab's). A bad value
// stops the load (checkInventory), so here it cannot occur.
func (l *lab) groupLoader(g *profile.Group) string {
	if g != nil {
		if v, ok := g.Metadata[loaderKey].(string); ok {
			if loader, err := parseLoader(v); err == nil {
				return loader
			}
		}
	}
	if l.s.BootLoader == "" {
		return loaderGRUB
	}
	return l.s.BootLoader
}

// bootPolicy is DHCP's boot policy: GRUB's images by architecture (files,
// dhcp.boot_files over dhcpsrv's defaults) for machines that boot with
// GRUB; for those that boot with iPXE the iPXE binaries -make-tftp-root
// copied (dhcpsrv.DefaultIPXEFiles), and /boot.ipxe for iPXE itself.
func (l *lab) bootPolicy(files map[dhcpsrv.Arch]string) dhcpsrv.BootPolicy {
	return dhcpsrv.BootPolicy{Files: files, HTTPBase: l.s.BaseURL.String(),
		Loader: l.dhcpLoader, IPXEScript: l.s.BaseURL.String() + "/boot.ipxe"}
}

// dhcpLoader is dhcpsrv.BootPolicy.Loader: the loader of the group the
// MAC and the architecture the client sent (option 93, as profile.KeyArch)
// match in the current inventory (the lab's when none does).
func (l *lab) dhcpLoader(_ context.Context, mac hwaddr.MAC, ci dhcpsrv.ClientInfo) dhcpsrv.Loader {
	attrs := map[string]string{profile.KeyMAC: mac.String()}
	if cpu := ci.Arch.CPU(); cpu != "" {
		attrs[profile.KeyArch] = cpu
	}
	g, _, err := l.store.Inventory().Match(attrs)
	if err != nil {
		g = nil
	}
	if l.groupLoader(g) == loaderIPXE {
		return dhcpsrv.LoaderIPXE
	}
	if l.groupSecureBoot(g) {
		return dhcpsrv.LoaderShim
	}
	return dhcpsrv.LoaderGRUB
}

// checkInventory is the store's check of every newly loaded inventory:
// Ignition and generic templates (ignition.Handler.Check), then what each
// boot loader can boot (grubcfg.Check, ipxe.Check). A profile the loader
// of one of its groups cannot boot rejects the inventory; one that only
// the other loader cannot boot is a warning naming file and loader, so
// neither is a surprise at boot (the handler would answer 404 with the
// reason).
func (l *lab) checkInventory(inv *profile.Inventory) error {
	if err := l.ignition.Check(inv); err != nil {
		return err
	}
	var errs []error
	for _, g := range inv.Groups() {
		if v, ok := g.Metadata[loaderKey]; ok {
			s, _ := v.(string)
			if _, err := parseLoader(s); err != nil || s == "" {
				errs = append(errs, fmt.Errorf("%w: %s: group %q: metadata %s: %v: want \"grub\" or \"ipxe\"", profile.ErrInvalid, g.Source, g.ID, loaderKey, v))
			}
		}
	}
	errs = append(errs, l.checkSecureBoot(inv)...)
	warned := map[string]bool{}
	for _, p := range append(grubcfg.Check(inv), ipxe.Check(inv)...) {
		if l.groupLoader(p.Group) == p.Loader {
			errs = append(errs, fmt.Errorf("%w: %s (its machines boot with %s)", profile.ErrInvalid, p.Error(), p.Loader))
			continue
		}
		key := p.Loader + "\x00" + p.Profile.ID
		if !warned[key] {
			warned[key] = true
			l.log.Warn("inventory: a profile this boot loader cannot boot (no group of it uses the loader)",
				"file", p.Profile.Source, "profile", p.Profile.ID, "loader", p.Loader, "problem", p.Err)
		}
	}
	return errors.Join(errs...)
}

// bootIPXEHandler serves /boot.ipxe and /boot.ipxe.0, matchbox's
// introspection script, pointing at base_url.
func (l *lab) bootIPXEHandler() http.Handler {
	h, err := ipxe.BootHandler(l.s.BaseURL.String(), func(r *http.Request) {
		l.eventIP(remoteIP(r), stageIPXEBoot, r.URL.Path)
	})
	if err != nil {
		l.log.Error("boot.ipxe", "err", err)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			profile.Error(w, http.StatusInternalServerError, "boot.ipxe: "+err.Error())
		})
	}
	return h
}

// ipxeHandler serves /ipxe: the machine's iPXE script, or a local-disk
// boot once it has installed, with the same inventory and install state
// as /grub.
func (l *lab) ipxeHandler() http.Handler {
	return &ipxe.Handler{
		Resolver:  l.resolver,
		Logger:    l.log.With("component", "ipxe"),
		LocalBoot: func(m *profile.Machine) bool { return !m.MAC.IsZero() && l.state.isInstalled(m.MAC) },
		OnServe: func(r *http.Request, m *profile.Machine, local bool) {
			l.timeline.learn(m.MAC, remoteIP(r))
			stage, detail := stageIPXE, "profile "+m.Profile.ID
			if local {
				stage, detail = stageLocalBoot, "installed: boot the local disk"
			} else if arch := m.Attrs["arch"]; arch != "" {
				detail += ", iPXE " + arch
			}
			l.event(m.MAC, remoteIP(r), stage, detail)
			if !local {
				l.rememberBoot(m)
			}
		},
	}
}

// genericHandler serves /generic and metadataHandler /metadata, both
// behind the /ignition guard (group metadata may hold secrets).
func (l *lab) genericHandler() http.Handler {
	return &ignition.GenericHandler{Resolver: l.resolver, Guard: l.ignition.Guard, Logger: l.log.With("component", "generic"),
		OnServe: func(r *http.Request, m *profile.Machine) {
			l.event(m.MAC, remoteIP(r), stageGeneric, "profile "+m.Profile.ID+", generic/"+m.Profile.GenericID)
		}}
}

func (l *lab) metadataHandler() http.Handler {
	return &ignition.MetadataHandler{Resolver: l.resolver, Guard: l.ignition.Guard, Logger: l.log.With("component", "metadata"),
		OnServe: func(r *http.Request, m *profile.Machine) {
			l.event(m.MAC, remoteIP(r), stageMetadata, "group "+m.Group.ID)
		}}
}

// installIPXE copies Debian's iPXE binaries into the TFTP root dir, where
// DHCP points firmware that is to boot with iPXE (boot_loader: ipxe),
// saying what it made and skipped.
func installIPXE(dir string, out io.Writer) error {
	made, skipped, err := ipxe.InstallBinaries(dir, "")
	for _, s := range skipped {
		fmt.Fprintf(out, "skip %s (only machines that boot with iPXE need it)\n", s)
	}
	for _, p := range made {
		fmt.Fprintf(out, "%s: made (iPXE, for machines whose boot_loader is ipxe)\n", p)
	}
	return err
}

// recordsFailures lists the handlers whose error answers go on the
// machine's timeline.
func recordsFailures(name string) bool {
	return strings.Contains(" grub ipxe ignition generic metadata ", " "+name+" ")
}
