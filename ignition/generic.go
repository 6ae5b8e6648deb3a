package ignition

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/metalboot/metalboot/profile"
)

// ErrNoGeneric: the machine's profile has no generic_id (HTTP 404).
var ErrNoGeneric = errors.New("profile has no generic_id")

// GenericTemplate compiles src, the content of generic/<name> in a data
// directory: a text/template (missingkey=error) for matchbox's free-form
// configs, rendered against Data like an Ignition template.
func GenericTemplate(name string, src []byte) (*Template, error) {
	return compileFile("generic/"+name, name, src)
}

// RenderGeneric renders generic template t for m. The output's format is
// the template author's (a shell script, YAML, an INI file…), so values
// from the network cannot be encoded for it: every such value in Data(m)
// is validated strictly for its kind first, as Template.Execute does
// (canonical MAC, UUID and IP address, RFC 1123 host name, labels and
// query values of [A-Za-z0-9._:/@=+-]), and one that fails is a
// *profile.ValueError (HTTP 400). Errors are that, *TemplateError or
// wrap ErrMissingParam.
func RenderGeneric(t *Template, m *profile.Machine) ([]byte, error) {
	return t.Execute(Data(m))
}

// genericSet holds the compiled generic templates of one inventory.
type genericSet struct {
	inv  *profile.Inventory
	tmpl map[string]*Template
	errs map[string]error
}

func compileGeneric(inv *profile.Inventory) *genericSet {
	s := &genericSet{inv: inv, tmpl: map[string]*Template{}, errs: map[string]error{}}
	for _, p := range inv.Profiles() {
		name := p.GenericID
		if name == "" || s.tmpl[name] != nil || s.errs[name] != nil {
			continue
		}
		src, ok := inv.Generic(name)
		if !ok {
			s.errs[name] = &TemplateError{File: "generic/" + name, Stage: StageParse, Err: errors.New("no such file")}
			continue
		}
		t, err := GenericTemplate(name, src)
		if err != nil {
			s.errs[name] = err
			continue
		}
		s.tmpl[name] = t
	}
	return s
}

// checkGeneric compiles every generic template a profile references and
// renders it for a sample machine of each group using it.
func checkGeneric(inv *profile.Inventory) (*genericSet, error) {
	s := compileGeneric(inv)
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.errs)) {
		errs = append(errs, s.errs[name])
	}
	for _, g := range inv.Groups() {
		p, ok := inv.Profile(g.Profile)
		if !ok || p.GenericID == "" || s.tmpl[p.GenericID] == nil {
			continue
		}
		t := s.tmpl[p.GenericID]
		if _, err := t.Execute(Data(sampleMachine(g, p, t))); err != nil {
			errs = append(errs, fmt.Errorf("group %q (%s), profile %q: %w", g.ID, orGo(g.Source), p.ID, err))
		}
	}
	return s, errors.Join(errs...)
}

// GenericHandler serves GET /generic?mac=…&<labels>: matchbox's generic
// config, the machine's profile's generic_id template (a file under
// generic/) rendered against Data (group metadata and selector at the
// top level, .request.query, .request.raw_query, and metalboot's fields;
// see RenderGeneric for values from the network), as text/plain.
//
// Answers: 200 with the rendered text; 400 for a malformed query, a query
// parameter the template reads but the request lacks, or a value from
// the network that fails its strict validation; 403 when Guard refuses;
// 404 when no group matches or the profile has no generic_id; 405 for
// other methods than GET and HEAD; 500 when the template fails for a
// reason of its own (Check finds those when the inventory loads).
// matchbox answers 404 for every error.
//
// GenericHandler is safe for concurrent use; its fields must not change
// once it serves.
type GenericHandler struct {
	// Resolver resolves the query to a machine. When nil, requests must
	// already carry a machine in their context (profile.NewContext).
	Resolver *profile.Resolver
	// Guard, when set, restricts each machine's config to the addresses
	// it allows, as Handler.Guard does (generic configs carry group
	// metadata, which may hold secrets).
	Guard Guard
	// OnServe, when set, is called after a config was sent in answer to
	// a GET.
	OnServe func(r *http.Request, m *profile.Machine)
	// Logger receives errors; nil discards.
	Logger *slog.Logger

	once sync.Once
	next http.Handler
	set  atomic.Pointer[genericSet]
}

// ServeHTTP implements http.Handler.
func (h *GenericHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(func() {
		h.next = http.HandlerFunc(h.serve)
		if h.Resolver != nil {
			h.next = h.Resolver.Middleware(h.next)
		}
	})
	h.next.ServeHTTP(w, r)
}

// CheckGeneric compiles every generic template a profile of inv
// references and renders it for a sample machine of each group using
// it, so a broken template fails the load. Check (and Handler.Check)
// include it.
func CheckGeneric(inv *profile.Inventory) error {
	_, err := checkGeneric(inv)
	return err
}

// Render returns the generic config machine m is served; errors wrap
// ErrNoGeneric, ErrMissingParam, profile.ErrBadValue or are
// *TemplateError.
func (h *GenericHandler) Render(m *profile.Machine) ([]byte, error) {
	if m.Profile == nil || m.Profile.GenericID == "" {
		id := ""
		if m.Profile != nil {
			id = m.Profile.ID
		}
		return nil, fmt.Errorf("%w: profile %q", ErrNoGeneric, id)
	}
	inv := m.Inventory()
	if inv == nil {
		return nil, errors.New("ignition: machine without inventory")
	}
	s := h.set.Load()
	if s == nil || s.inv != inv {
		s = compileGeneric(inv)
		h.set.Store(s)
	}
	name := m.Profile.GenericID
	t := s.tmpl[name]
	if t == nil {
		if err := s.errs[name]; err != nil {
			return nil, err
		}
		return nil, &TemplateError{File: "generic/" + name, Stage: StageParse, Err: errors.New("not compiled")}
	}
	return RenderGeneric(t, m)
}

func (h *GenericHandler) serve(w http.ResponseWriter, r *http.Request) {
	m, ok := serveable(w, r, h.Guard, h.Logger)
	if !ok {
		return
	}
	out, err := h.Render(m)
	if err != nil {
		var te *TemplateError
		var ve *profile.ValueError
		code, msg := http.StatusInternalServerError, "generic config not available (details in the server log)"
		switch {
		case errors.Is(err, ErrNoGeneric):
			code, msg = http.StatusNotFound, err.Error()
		case errors.As(err, &ve):
			code, msg = http.StatusBadRequest, "bad request: "+ve.Error()
		case errors.Is(err, ErrMissingParam) && errors.As(err, &te):
			code, msg = http.StatusBadRequest, "bad request: "+te.Short()
		case errors.As(err, &te):
			msg = "generic config not available: " + te.Short()
		}
		logNotServed(logger(h.Logger), "generic", m, code, err)
		profile.Error(w, code, msg)
		return
	}
	writeText(w, r, out)
	if r.Method == http.MethodGet && h.OnServe != nil {
		h.OnServe(r, m)
	}
}

// serveable checks the method and the guard and returns the machine the
// request resolved to; it has answered when ok is false.
func serveable(w http.ResponseWriter, r *http.Request, g Guard, log *slog.Logger) (*profile.Machine, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		profile.Error(w, http.StatusMethodNotAllowed, "method not allowed")
		return nil, false
	}
	m, ok := profile.FromContext(r.Context())
	if !ok {
		logger(log).Error("ignition: request without resolved machine: set Resolver or wrap the handler in a Resolver's Middleware")
		profile.Error(w, http.StatusInternalServerError, "internal error: no machine resolved")
		return nil, false
	}
	if g != nil {
		remote, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || m.MAC.IsZero() || !g.Allowed(r.Context(), m.MAC, remote.Addr().Unmap()) {
			logger(log).Warn("ignition: refused by guard", "path", r.URL.Path, "mac", m.MAC.String(), "remote", r.RemoteAddr)
			profile.Error(w, http.StatusForbidden, "forbidden: this address does not hold the machine's lease")
			return nil, false
		}
	}
	return m, true
}

func logNotServed(log *slog.Logger, what string, m *profile.Machine, code int, err error) {
	attrs := []any{"mac", m.MAC.String(), "query", m.RawQuery, "status", code, "err", err}
	if m.Group != nil {
		attrs = append(attrs, "group", m.Group.ID)
	}
	if code >= 500 {
		log.Error(what+": not served", attrs...)
	} else {
		log.Info(what+": not served", attrs...)
	}
}

// writeText answers 200 with body as text/plain (no body for HEAD).
func writeText(w http.ResponseWriter, r *http.Request, body []byte) {
	hd := w.Header()
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
