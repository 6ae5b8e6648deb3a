package profile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"strings"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Facts are what the server knows about a machine outside of the request,
// typically from its DHCP lease.
type Facts struct {
	IP       netip.Addr
	UUID     string
	Hostname string
	// Arch is the machine's architecture as DHCP saw it (option 93, e.g.
	// "arm64" for client architectures 11 and 19), a name NormalizeArch
	// takes; "" when unknown. It takes part in matching (KeyArch) when the
	// request names no architecture itself.
	Arch string
}

// FactSource looks up facts by MAC; labserver fills it from DHCP leases.
// Resolver calls it once per request with the request's context, so a
// networked source (a shared lease store) can honour the request's
// deadline and cancellation; a source that cannot answer in time reports
// false (no facts), which renders the machine without them. It must be
// safe for concurrent use.
type FactSource interface {
	Facts(ctx context.Context, mac hwaddr.MAC) (Facts, bool)
}

// FactSourceFunc adapts a function to FactSource.
type FactSourceFunc func(ctx context.Context, mac hwaddr.MAC) (Facts, bool)

// Facts calls f(ctx, mac).
func (f FactSourceFunc) Facts(ctx context.Context, mac hwaddr.MAC) (Facts, bool) { return f(ctx, mac) }

// Resolver resolves requests to machines: it parses and validates the
// request's attributes, matches them against the store's current inventory
// and completes the machine with known facts.
type Resolver struct {
	// Store gives the inventory; required.
	Store Store
	// BaseURL is what rendered configs point machines at, e.g.
	// "http://10.99.0.1:8080"; a trailing slash is removed.
	BaseURL string
	// Facts, when set, supplies UUID, hostname, IP and architecture for
	// a MAC. Each
	// fact is validated for what it claims to be (see Resolve); an
	// invalid one is dropped and logged.
	Facts FactSource
	// Logger receives unexpected resolution errors and dropped facts; nil
	// discards.
	Logger *slog.Logger
}

// Resolve matches attributes to a machine. It normalises them first as
// ParseQuery does (any spelling of a MAC, "MAC" for "mac", …), so a library
// caller gets the machine the data directory names, never the default
// group's by accident; a malformed value (a MAC that is not one) is an
// error wrapping ErrBadRequest. It returns an error wrapping ErrNoMatch
// when no group matches. ctx is
// passed to the FactSource (Middleware passes the request's context).
//
// The machine's architecture (KeyArch) is the request's, else the
// FactSource's: it is added to the attributes before matching, so a group
// selecting {"arch": "arm64"} matches a machine whose DHCP lease says
// ARM64 even when its boot loader did not say so. The machine's hostname
// is the request's, else the group's "hostname"
// metadata, else the FactSource's; its UUID the request's, else the
// FactSource's; its IP address the FactSource's, else the group's "ip"
// metadata. Facts are validated first: a hostname must be an RFC 1123 host
// name (it is lower-cased), a UUID the 8-4-4-4-12 hexadecimal form (it is
// lower-cased), an IP address valid and without zone (IPv4-mapped
// addresses are unmapped). An invalid fact is dropped and logged at level
// WARN, never rendered.
func (r *Resolver) Resolve(ctx context.Context, attrs map[string]string, rawQuery string) (*Machine, error) {
	norm := make(map[string]string, len(attrs))
	for k, v := range attrs {
		nk, nv, err := Normalize(k, v)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		if _, dup := norm[nk]; dup {
			return nil, fmt.Errorf("%w: parameter %q given twice", ErrBadRequest, nk)
		}
		if nv != "" {
			norm[nk] = nv
		}
	}
	return r.resolve(ctx, norm, rawQuery)
}

// resolve is Resolve for attributes already normalised (ParseQuery's).
func (r *Resolver) resolve(ctx context.Context, attrs map[string]string, rawQuery string) (*Machine, error) {
	var (
		mac       hwaddr.MAC
		facts     Facts
		haveFacts bool
	)
	if s, ok := attrs[KeyMAC]; ok {
		mac, _ = hwaddr.Parse(s) // validated by ParseQuery
	}
	if r.Facts != nil && !mac.IsZero() {
		if facts, haveFacts = r.Facts.Facts(ctx, mac); haveFacts {
			facts = r.checkFacts(mac, facts)
		}
	}
	if _, ok := attrs[KeyArch]; !ok && facts.Arch != "" {
		attrs = maps.Clone(attrs)
		attrs[KeyArch] = facts.Arch
	}
	inv := r.Store.Inventory()
	g, p, err := inv.Match(attrs)
	if err != nil {
		return nil, err
	}
	m := &Machine{
		Attrs:    attrs,
		RawQuery: rawQuery,
		Group:    g,
		Profile:  p,
		BaseURL:  strings.TrimSuffix(r.BaseURL, "/"),
		UUID:     attrs[KeyUUID],
		Hostname: attrs[KeyHostname],
		MAC:      mac,
		inv:      inv,
	}
	if s, ok := g.Metadata["hostname"].(string); ok && m.Hostname == "" {
		m.Hostname = s
	}
	if s, ok := g.Metadata["ip"].(string); ok {
		m.IP, _ = netip.ParseAddr(s)
	}
	if haveFacts {
		if m.UUID == "" {
			m.UUID = facts.UUID
		}
		if m.Hostname == "" {
			m.Hostname = facts.Hostname
		}
		if facts.IP.IsValid() {
			m.IP = facts.IP
		}
	}
	return m, nil
}

// checkFacts validates each fact for what it claims to be: a hostname is
// an RFC 1123 host name (lower-cased), a UUID the 8-4-4-4-12 hexadecimal
// form (lower-cased), an architecture a name NormalizeArch takes (made
// canonical), an IP address a valid address without zone (an
// IPv4-mapped IPv6 address becomes IPv4). A fact that is not is dropped
// and logged as a warning: a FactSource fills facts from the network (DHCP
// options), and they end up in rendered configs.
func (r *Resolver) checkFacts(mac hwaddr.MAC, f Facts) Facts {
	drop := func(fact string, value any, err error) {
		if r.Logger != nil {
			r.Logger.Warn("resolve: invalid fact dropped", "mac", mac.String(), "fact", fact, "value", fmt.Sprintf("%.80q", fmt.Sprint(value)), "err", err)
		}
	}
	if f.Hostname != "" {
		h, err := normalizeHostname(f.Hostname)
		if err != nil {
			drop(KeyHostname, f.Hostname, err)
		}
		f.Hostname = h
	}
	if f.UUID != "" {
		u, err := canonicalUUID(f.UUID)
		if err != nil {
			drop(KeyUUID, f.UUID, err)
		}
		f.UUID = u
	}
	if f.Arch != "" {
		a, err := NormalizeArch(f.Arch)
		if err != nil {
			drop(KeyArch, f.Arch, err)
		}
		f.Arch = a
	}
	if f.IP.IsValid() {
		if f.IP.Zone() != "" {
			drop("ip", f.IP, errors.New("address with a zone"))
			f.IP = netip.Addr{}
		} else {
			f.IP = f.IP.Unmap()
		}
	}
	return f
}

type ctxKey struct{}

// NewContext returns a context carrying m.
func NewContext(ctx context.Context, m *Machine) context.Context {
	return context.WithValue(ctx, ctxKey{}, m)
}

// FromContext returns the machine Middleware put in the context.
func FromContext(ctx context.Context) (*Machine, bool) {
	m, ok := ctx.Value(ctxKey{}).(*Machine)
	return m, ok
}

// Middleware resolves the request's query to a machine and passes it to
// next in the request context (FromContext), so renderers stay small. A
// malformed query gets 400 and no matching group 404, each with a one-line
// plain-text reason; next never sees such a request.
func (r *Resolver) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			Error(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		attrs, err := ParseQuery(req.URL.RawQuery)
		if err != nil {
			Error(w, http.StatusBadRequest, err.Error())
			return
		}
		m, err := r.resolve(req.Context(), attrs, req.URL.RawQuery)
		if errors.Is(err, ErrNoMatch) {
			Error(w, http.StatusNotFound, err.Error())
			return
		}
		if err != nil {
			if r.Logger != nil {
				r.Logger.Error("resolve", "err", err)
			}
			Error(w, http.StatusInternalServerError, "internal error")
			return
		}
		next.ServeHTTP(w, req.WithContext(NewContext(req.Context(), m)))
	})
}

// Error writes a one-line plain-text error response.
func Error(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	msg = strings.ReplaceAll(msg, "\n", "; ")
	_, _ = w.Write([]byte(msg + "\n"))
}
