package ipxe

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"github.com/metalboot/metalboot/internal/bootserve"
	"github.com/metalboot/metalboot/profile"
)

// Handler serves GET /ipxe?mac=…&uuid=… (and hostname=, any selector
// label, as matchbox does; BootScript sends them): the iPXE script of the
// machine the query resolves to, as text/plain. It answers exactly as
// grubcfg.Handler does for /grub:
//
//   - 400 with a one-line reason: malformed MAC or parameters (the
//     profile.Resolver middleware answers it), or a value from the
//     request or the DHCP lease that cannot be written into the script
//     (see Format and profile.Machine.RenderBootFor);
//   - 404 with a reason: no group matches, the matched profile has no
//     kernel to boot, or iPXE cannot boot it (a location it cannot
//     fetch, an initrd entry it cannot read; Check reports such profiles
//     when the inventory loads);
//   - 405 for methods other than GET and HEAD;
//   - 500 "cannot render…": anything else; the detail goes to Logger;
//   - 200: the script, from Render, or from RenderLocal when LocalBoot
//     says the machine is installed.
//
// iPXE runs a script only from a 2xx answer; on an error it fails the
// fetch (BootScript then asks once more without the attributes that may
// have been refused, and gives up with "exit 1").
//
// A Handler must not be copied or have its fields changed after first use.
type Handler struct {
	// Resolver matches requests to machines. When nil, requests must
	// already carry a machine in their context (profile.NewContext), e.g.
	// when the caller wraps the handler in its own Resolver.Middleware.
	Resolver *profile.Resolver
	// LocalBoot, when set, is asked for each resolved machine; true
	// answers RenderLocal's script (install once).
	LocalBoot func(*profile.Machine) bool
	// OnServe, when set, is called after a script was written in answer
	// to a GET, with the request, the machine and which kind was served
	// (local: RenderLocal's), for a provisioning timeline or metrics.
	OnServe func(r *http.Request, m *profile.Machine, local bool)
	// Logger receives render failures; nil discards.
	Logger *slog.Logger

	once sync.Once
	h    http.Handler
}

var ipxeLoader = bootserve.Loader{
	Name: "iPXE", What: "iPXE script", Log: "ipxe script",
	NoKernel: ErrNoKernel,
	Unbootable: func(err error) bool {
		return errors.Is(err, ErrBadLocation) || errors.Is(err, ErrBadInitrdName) || errors.Is(err, profile.ErrBadInitrd) || errors.Is(err, ErrUnencodable)
	},
	Describe: describe,
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(func() {
		h.h = http.HandlerFunc(h.serve)
		if h.Resolver != nil {
			h.h = h.Resolver.Middleware(h.h)
		}
	})
	h.h.ServeHTTP(w, r)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		profile.Error(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	m, ok := profile.FromContext(r.Context())
	if !ok {
		h.logger().Error("ipxe: request without resolved machine: set Handler.Resolver or wrap the handler in a Resolver's Middleware")
		profile.Error(w, http.StatusInternalServerError, "internal error: no machine resolved")
		return
	}
	local := h.LocalBoot != nil && h.LocalBoot(m)
	bp := bufPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			bufPool.Put(bp)
		}
	}()
	var (
		b   []byte
		err error
	)
	if local {
		b = AppendLocalScript((*bp)[:0], m)
	} else {
		b, err = AppendScript((*bp)[:0], m)
	}
	if err != nil {
		ipxeLoader.Fail(w, h.logger(), m, err)
		return
	}
	*bp = b
	writeScript(w, b)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
	if h.OnServe != nil {
		h.OnServe(r, m, local)
	}
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}
