package ignition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
)

// Guard decides whether a request from remote may receive the config of
// the machine with address mac. labserver's DHCP lease table is the
// typical implementation: allow only the IP that holds the MAC's lease.
//
// Handler calls it once per request with the request's context, so a
// guard that asks a networked lease store can honour the request's
// deadline and cancellation. A guard that cannot decide (the store is
// unreachable, ctx ended) must answer false: the request is refused (403)
// and the machine retries, which is safe, where serving a config (SSH keys,
// secrets in metadata) to the wrong host is not. It must be safe for
// concurrent use.
type Guard interface {
	Allowed(ctx context.Context, mac hwaddr.MAC, remote netip.Addr) bool
}

// GuardFunc adapts a function to Guard.
type GuardFunc func(ctx context.Context, mac hwaddr.MAC, remote netip.Addr) bool

// Allowed calls f(ctx, mac, remote).
func (f GuardFunc) Allowed(ctx context.Context, mac hwaddr.MAC, remote netip.Addr) bool {
	return f(ctx, mac, remote)
}

// Errors a Handler's Render returns besides *TemplateError.
var (
	// ErrNoIgnition: the machine's profile has no ignition_id (HTTP 404).
	ErrNoIgnition = errors.New("profile has no ignition_id")
	// ErrRequestValues: the template renders for its group's sample
	// machine but not with this request's values, e.g. a hostname that
	// breaks the YAML it is put in (HTTP 400).
	ErrRequestValues = errors.New("config does not render with this request's values")
)

// DefaultCacheSize is the number of converted configs a Handler keeps when
// CacheSize is 0.
const DefaultCacheSize = 1024

// Handler serves GET /ignition?mac=…[&os=installed][&uuid=…]: the Ignition
// config of the machine the query resolves to (its profile's ignition_id,
// rendered, translated, validated), as application/json.
//
// Answers: 200 with the config; 400 for a malformed query, a query
// parameter the template needs but the request lacks, or a value from the
// request or the DHCP lease that cannot be put in the config (see
// Template.Render; the reason names the field); 403 when Guard
// refuses; 404 when no group matches or the profile has no ignition_id;
// 405 for methods other than GET and HEAD; 500 when the template is broken
// (the client gets a short reason, the log the file, line and detail). A
// config that Ignition's validation rejects is never served.
//
// Handler is safe for concurrent use; its fields must not change once it
// serves.
type Handler struct {
	// Resolver resolves the query to a machine (400 and 404 come from its
	// Middleware). When nil, requests must already carry a machine in
	// their context (profile.NewContext), e.g. when the caller wraps the
	// handler in its own Resolver.Middleware.
	Resolver *profile.Resolver
	// Guard, when set, restricts each machine's config to the remote
	// address Guard allows (403 otherwise, also for requests without a
	// MAC). Off by default: any client that knows a MAC gets its config,
	// as with matchbox. Behind a reverse proxy the remote address is the
	// proxy's.
	Guard Guard
	// OnServe, when set, is called after a config was sent in answer to a
	// GET, with the request (its RemoteAddr tells which host fetched it)
	// and the resolved machine; m.Attrs["os"] == "installed" means
	// the machine fetched its installed config (labserver's install-once
	// state). It runs on the request's goroutine; HEAD requests and
	// errors do not call it.
	OnServe func(r *http.Request, m *profile.Machine)
	// Logger receives errors (with template file, line and detail) and
	// Butane/Ignition warnings; nil discards.
	Logger *slog.Logger
	// CacheSize bounds the cache of converted configs: Butane translation
	// and validation keyed by the rendered text, which alone determines
	// their result, so a cached answer is always the one a fresh
	// conversion would give (whatever the inventory or machine). The text
	// holds placeholders instead of values from the network (see
	// Template.Render), so every machine of a group shares one entry; the
	// machine's values are put in and the config validated per request.
	// 0 means DefaultCacheSize; negative disables the cache.
	CacheSize int

	once  sync.Once
	next  http.Handler
	set   atomic.Pointer[compiledSet]
	mu    sync.Mutex
	cache map[string]cacheEntry
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(func() {
		h.next = http.HandlerFunc(h.serve)
		if h.Resolver != nil {
			h.next = h.Resolver.Middleware(h.next)
		}
	})
	h.next.ServeHTTP(w, r)
}

func (h *Handler) log() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	m, ok := profile.FromContext(r.Context())
	if !ok {
		h.log().Error("ignition: request without resolved machine: set Handler.Resolver or wrap the handler in a Resolver's Middleware")
		profile.Error(w, http.StatusInternalServerError, "internal error: no machine resolved")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		profile.Error(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if h.Guard != nil {
		remote, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || m.MAC.IsZero() || !h.Guard.Allowed(r.Context(), m.MAC, remote.Addr().Unmap()) {
			h.log().Warn("ignition: refused by guard", "mac", m.MAC.String(), "remote", r.RemoteAddr)
			profile.Error(w, http.StatusForbidden, "forbidden: this address does not hold the machine's lease")
			return
		}
	}
	out, err := h.Render(m)
	if err != nil {
		code, msg := h.status(err)
		attrs := []any{"mac", m.MAC.String(), "query", m.RawQuery, "status", code, "err", err}
		if m.Group != nil {
			attrs = append(attrs, "group", m.Group.ID)
		}
		if code >= 500 {
			h.log().Error("ignition: config not served", attrs...)
		} else {
			h.log().Info("ignition: config not served", attrs...)
		}
		profile.Error(w, code, msg)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(out.JSON)))
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(out.JSON)
	if h.OnServe != nil {
		h.OnServe(r, m)
	}
}

// status maps a Render error to an HTTP status and a short reason.
func (h *Handler) status(err error) (int, string) {
	var te *TemplateError
	switch {
	case errors.Is(err, ErrNoIgnition):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, ErrMissingParam):
		if errors.As(err, &te) {
			return http.StatusBadRequest, "bad request: " + te.Short()
		}
		return http.StatusBadRequest, "bad request: " + err.Error()
	case errors.Is(err, ErrRequestValues):
		var ve *profile.ValueError
		if errors.As(err, &ve) {
			return http.StatusBadRequest, "bad request: " + ErrRequestValues.Error() + ": " + ve.Error()
		}
		return http.StatusBadRequest, "bad request: " + ErrRequestValues.Error()
	case errors.As(err, &te):
		return http.StatusInternalServerError, "ignition config not available: " + te.Short()
	}
	return http.StatusInternalServerError, "ignition config not available (details in the server log)"
}

// compiled returns the compiled templates of inv, compiling them the
// first time inv is seen.
func (h *Handler) compiled(inv *profile.Inventory) *compiledSet {
	if s := h.set.Load(); s != nil && s.inv == inv {
		return s
	}
	s := compileInventory(inv)
	h.set.Store(s)
	return s
}

// Check is Check with the handler's logger for warnings; it also keeps the
// compiled templates of inv for serving. Pass h.Check as
// profile.FSStore.Check.
func (h *Handler) Check(inv *profile.Inventory) error {
	s, warns, err := check(inv)
	for _, w := range warns {
		h.log().Warn("ignition template", "warning", w)
	}
	if err != nil {
		return err
	}
	h.set.Store(s)
	return nil
}

// Render returns the config machine m is served: its profile's template
// rendered against Data(m), translated and validated. Errors wrap
// ErrNoIgnition, ErrMissingParam, ErrRequestValues or are *TemplateError.
func (h *Handler) Render(m *profile.Machine) (Output, error) {
	if m.Profile == nil || m.Profile.IgnitionID == "" {
		id := ""
		if m.Profile != nil {
			id = m.Profile.ID
		}
		return Output{}, fmt.Errorf("%w: profile %q", ErrNoIgnition, id)
	}
	inv := m.Inventory()
	if inv == nil {
		return Output{}, errors.New("ignition: machine without inventory")
	}
	s := h.compiled(inv)
	name := m.Profile.IgnitionID
	t := s.tmpl[name]
	if t == nil {
		if err := s.errs[name]; err != nil {
			return Output{}, err
		}
		return Output{}, &TemplateError{File: "ignition/" + name, Stage: StageParse, Err: errors.New("not compiled")}
	}
	out, fresh, err := t.render(Data(m), h)
	if err != nil {
		return Output{}, h.classify(m, t, err)
	}
	if fresh {
		for _, w := range out.Warnings {
			h.log().Warn("ignition template", "file", "ignition/"+name, "warning", w)
		}
	}
	return out, nil
}

// cacheEntry is a converted config with placeholders and where they are;
// fallback marks a text whose metadata placeholders cannot stand for the
// values (see errMetaFallback).
type cacheEntry struct {
	out      Output
	plan     *plan
	fallback bool
}

// classify tells a broken template (it fails for the group's sample
// machine too: the error as is) from one that fails only with this
// request's values (ErrRequestValues, wrapping the detail).
func (h *Handler) classify(m *profile.Machine, t *Template, err error) error {
	if errors.Is(err, profile.ErrBadValue) {
		return fmt.Errorf("%w: %w", ErrRequestValues, err)
	}
	if errors.Is(err, ErrMissingParam) || m.Group == nil {
		return err
	}
	if _, serr := t.Render(Data(sampleMachine(m.Group, m.Profile, t))); serr != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrRequestValues, err)
}

func (h *Handler) cached(key string) (cacheEntry, bool) {
	if h.CacheSize < 0 {
		return cacheEntry{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out, ok := h.cache[key]
	return out, ok
}

func (h *Handler) store(key string, out cacheEntry) {
	size := h.CacheSize
	if size < 0 {
		return
	}
	if size == 0 {
		size = DefaultCacheSize
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cache == nil {
		h.cache = make(map[string]cacheEntry)
	}
	for k := range h.cache {
		if len(h.cache) < size {
			break
		}
		delete(h.cache, k) // arbitrary eviction keeps the bound
	}
	h.cache[key] = out
}
