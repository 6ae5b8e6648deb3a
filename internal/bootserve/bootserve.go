// Package bootserve holds what the boot-loader handlers (grubcfg.Handler
// for /grub, ipxe.Handler for /ipxe) answer alike when a machine's
// configuration cannot be rendered: which status each failure gets, its
// one-line reason, and at which level it is logged. Each handler keeps its
// own rendering and its own success path; the statuses are documented on
// the handlers.
package bootserve

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/metalboot/metalboot/profile"
)

// Loader describes one boot loader's answers.
type Loader struct {
	// Name is the boot loader's name in messages: "GRUB", "iPXE".
	Name string
	// What names what is served, after "cannot render the": "GRUB
	// configuration", "iPXE script".
	What string
	// Log is the log message's subject: "grub config", "ipxe script".
	Log string
	// NoKernel is the renderer's error for a profile without a kernel.
	NoKernel error
	// Unbootable reports whether err means this boot loader cannot boot the
	// profile (a location it cannot load, an initrd entry it has no form
	// for): a 404, which Check reports when the inventory loads.
	Unbootable func(err error) bool
	// Describe names a machine in messages.
	Describe func(*profile.Machine) string
}

// Fail answers a failed render of machine m's configuration:
//   - err is NoKernel: 404 "no network boot for …";
//   - a *profile.ValueError (a value from the request or the lease cannot
//     be encoded): 400 with the reason, logged at Info;
//   - Unbootable(err): 404 "no <Name> boot for …: <err>", logged at Warn;
//   - anything else: 500 "cannot render the <What> of …", the detail
//     logged at Error.
func (l *Loader) Fail(w http.ResponseWriter, log *slog.Logger, m *profile.Machine, err error) {
	d := l.Describe(m)
	var ve *profile.ValueError
	switch {
	case errors.Is(err, l.NoKernel):
		profile.Error(w, http.StatusNotFound, "no network boot for "+d+": the profile has no boot.kernel")
	case errors.As(err, &ve):
		log.Info(l.Log+" not served: a value from the request", "machine", d, "err", err)
		profile.Error(w, http.StatusBadRequest, "bad request: cannot render the "+l.What+" of "+d+": "+ve.Error())
	case l.Unbootable(err):
		log.Warn(l.Log+" not served: "+l.Name+" cannot boot the profile", "machine", d, "err", err)
		profile.Error(w, http.StatusNotFound, "no "+l.Name+" boot for "+d+": "+err.Error())
	default:
		log.Error(l.Log, "machine", d, "err", err)
		profile.Error(w, http.StatusInternalServerError, "cannot render the "+l.What+" of "+d+" (see the server log)")
	}
}
