package grubcfg

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/metalboot/metalboot/internal/bootserve"
	"github.com/metalboot/metalboot/profile"
)

// Handler serves GET /grub?mac=… (and uuid=, os=, hostname=, any selector
// label, as matchbox does): the configuration of the machine the query
// resolves to, as text/plain.
//
//   - 400 with a one-line reason: malformed MAC or parameters (the
//     profile.Resolver middleware answers it);
//   - 400 with the reason: a value from the request or the DHCP lease
//     (hostname, a label…) cannot be encoded for the kernel command line
//     (white space, '"', control characters: it would add a kernel
//     parameter; see profile.Machine.Render);
//   - 404 with a reason: no group matches, the matched profile has no
//     kernel to boot (e.g. an "installed" profile), or GRUB cannot boot
//     it: a kernel or initrd location GRUB cannot load (https, a relative
//     path) or an initrd entry it has no form for. Check reports such
//     profiles when the inventory loads, so this is never a surprise at
//     boot;
//   - 500 "cannot render…": anything else (the profile's templates are
//     checked when the inventory loads); the detail goes to Logger;
//   - 200: the configuration, from Render, or from RenderLocal when
//     LocalBoot says the machine is installed.
//
// When the client is GRUB (User-Agent "GRUB …"), an error's body is a GRUB
// script that echoes the reason instead of plain text: GRUB's configfile
// runs the body whatever the status, so the reason shows on the console.
//
// A Handler must not be copied or have its fields changed after first use.
type Handler struct {
	// Resolver matches requests to machines; required.
	Resolver *profile.Resolver
	// Options shape every rendered configuration.
	Options Options
	// LocalBoot, when set, is asked for each resolved machine; true answers
	// a configuration that boots the local disk (install once).
	LocalBoot func(*profile.Machine) bool
	// OnServe, when set, is called after a configuration was written, with
	// the request (its RemoteAddr tells which host fetched it), the machine
	// and which kind was served (local: a local-disk boot), for a
	// provisioning timeline or metrics.
	OnServe func(r *http.Request, m *profile.Machine, local bool)
	// Logger receives render failures; nil discards.
	Logger *slog.Logger

	once sync.Once
	h    http.Handler
}

var grubLoader = bootserve.Loader{
	Name: "GRUB", What: "GRUB configuration", Log: "grub config",
	NoKernel: ErrNoKernel,
	Unbootable: func(err error) bool {
		return errors.Is(err, ErrBadPath) || errors.Is(err, ErrUnsupportedURL) || errors.Is(err, profile.ErrBadInitrd)
	},
	Describe: describe,
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(func() {
		if h.Resolver == nil {
			h.h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				profile.Error(w, http.StatusInternalServerError, "grubcfg: Handler without Resolver")
			})
			return
		}
		h.h = h.Resolver.Middleware(http.HandlerFunc(h.serve))
	})
	if !strings.HasPrefix(r.UserAgent(), "GRUB") {
		h.h.ServeHTTP(w, r)
		return
	}
	gw := &grubErrorWriter{ResponseWriter: w}
	h.h.ServeHTTP(gw, r)
	gw.finish()
}

// grubErrorWriter turns an error answer to GRUB into a GRUB script that
// prints it. GRUB 2.06's configfile runs whatever body comes back, whatever
// the status: a plain-text reason ("no group matches …") ends up as
// "error: can't find command `no'" on the console. As an echo, the operator
// reads the reason on the machine's console (the labserver e2e boots a
// machine no group matches and finds it there).
type grubErrorWriter struct {
	http.ResponseWriter
	code int
	body []byte
}

func (g *grubErrorWriter) WriteHeader(code int) {
	if g.code != 0 {
		return
	}
	g.code = code
	if code < 400 {
		g.ResponseWriter.WriteHeader(code)
	}
}

func (g *grubErrorWriter) Write(b []byte) (int, error) {
	if g.code == 0 {
		g.WriteHeader(http.StatusOK)
	}
	if g.code < 400 {
		return g.ResponseWriter.Write(b)
	}
	if len(g.body) < 1024 {
		g.body = append(g.body, b...)
	}
	return len(b), nil
}

func (g *grubErrorWriter) finish() {
	if g.code < 400 {
		return
	}
	msg := strings.Join(strings.Fields(string(g.body)), " ")
	body := "echo " + Quote("metalboot: /grub answered "+strconv.Itoa(g.code)+" "+http.StatusText(g.code)+": "+msg) + "\n"
	hd := g.ResponseWriter.Header()
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	g.ResponseWriter.WriteHeader(g.code)
	_, _ = g.ResponseWriter.Write([]byte(body))
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	m, ok := profile.FromContext(r.Context())
	if !ok {
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
		b, err = AppendLocalConfig((*bp)[:0], m, h.Options)
	} else {
		b, err = AppendConfig((*bp)[:0], m, h.Options)
	}
	if err != nil {
		grubLoader.Fail(w, h.logger(), m, err)
		return
	}
	*bp = b
	writeConfig(w, b)
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
