package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

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

// groupLoader is the boot loader machines of g boot with.
func (l *lab) groupLoader(*profile.Group) string { return loaderGRUB }

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

// recordsFailures lists the handlers whose error answers go on the
// machine's timeline.
func recordsFailures(name string) bool {
	return strings.Contains(" grub ipxe ignition generic metadata ", " "+name+" ")
}
