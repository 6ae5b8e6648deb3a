package grubcfg

import (
	"errors"

	"github.com/metalboot/metalboot/profile"
)

// Check renders, for every group of inv, the GRUB configuration of the
// group's sample machine (profile.Inventory.SampleMachine) and returns a
// problem for each group whose profile GRUB cannot boot: a kernel or
// initrd location GRUB cannot load (ErrUnsupportedURL: https, as GRUB has
// no TLS; ErrBadPath: a relative path), an initrd entry GRUB has no form
// for (profile.ErrBadInitrd). A profile without kernel is no problem (it
// boots nothing, e.g. an "installed" profile). Run it when an inventory
// loads (labserver does, on every reload), so that such a profile is
// reported with its file before a machine boots, not answered at boot;
// the Handler answers 404 with the reason for a machine whose profile it
// cannot render.
func Check(inv *profile.Inventory) []profile.LoaderProblem {
	var out []profile.LoaderProblem
	for _, g := range inv.Groups() {
		m := inv.SampleMachine(g)
		if m.Profile == nil {
			continue
		}
		if _, err := AppendConfig(nil, m, Options{}); err != nil && !errors.Is(err, ErrNoKernel) {
			out = append(out, profile.LoaderProblem{Loader: "GRUB", Group: g, Profile: m.Profile, Err: err})
		}
	}
	return out
}
