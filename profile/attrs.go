package profile

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// ErrBadRequest is wrapped by every error ParseQuery returns: the request
// itself is malformed (HTTP 400), as opposed to not matching (HTTP 404).
var ErrBadRequest = errors.New("bad request")

// Limits on request attributes. They keep hostile input small before it
// reaches matching or templates.
const (
	MaxAttrs    = 16
	MaxKeyLen   = 64
	MaxValueLen = 256
	MaxQueryLen = 2048
)

// ParseQuery turns a /grub or /ignition query string into normalised
// selector attributes: every parameter becomes an attribute (as in
// matchbox), "mac" is parsed and put in canonical form, "uuid" is checked
// and lower-cased, "hostname" must be an RFC 1123 host name and is
// lower-cased (one trailing dot is dropped), "arch" must name an
// architecture NormalizeArch knows and is put in its canonical form.
// Parameter names are
// case-insensitive: "mac" and "MAC" are the same attribute, so both in one
// query are "given twice". Repeated, overlong or malformed parameters, and
// values with characters outside [A-Za-z0-9.:_@/+=,-], are rejected with an
// error wrapping ErrBadRequest. When a query has several problems the one
// reported is always the same (parameters are checked in sorted order).
func ParseQuery(rawQuery string) (map[string]string, error) {
	if len(rawQuery) > MaxQueryLen {
		return nil, fmt.Errorf("%w: query longer than %d bytes", ErrBadRequest, MaxQueryLen)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: query: %v", ErrBadRequest, err)
	}
	if len(q) > MaxAttrs {
		return nil, fmt.Errorf("%w: more than %d parameters", ErrBadRequest, MaxAttrs)
	}
	keys := slices.Sorted(maps.Keys(q))
	// Names first, so that "mac=bad&MAC=x" is "given twice" whatever the
	// order: two spellings of one name are never a choice between values.
	seen := make(map[string]string, len(keys))
	for _, k := range keys {
		if vs := q[k]; len(vs) != 1 {
			return nil, fmt.Errorf("%w: parameter %q given %d times", ErrBadRequest, trunc(k), len(vs))
		}
		lk := strings.ToLower(k)
		if other, dup := seen[lk]; dup {
			return nil, fmt.Errorf("%w: parameter %q given twice (as %q and %q; names are case-insensitive)", ErrBadRequest, trunc(lk), trunc(other), trunc(k))
		}
		seen[lk] = k
	}
	attrs := make(map[string]string, len(q))
	for _, k := range keys {
		nk, nv, err := normalizeAttr(k, q[k][0])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		if nv == "" {
			continue // "uuid=" from a boot loader that had none: no attribute
		}
		attrs[nk] = nv
	}
	return attrs, nil
}

// Normalize checks and normalises one attribute the way ParseQuery and
// selectors do. It is exported for callers that build attributes by hand
// (e.g. from a DHCP lease).
func Normalize(key, value string) (string, string, error) {
	return normalizeAttr(key, value)
}

func normalizeAttr(k, v string) (string, string, error) {
	if k == "" || len(k) > MaxKeyLen {
		return "", "", fmt.Errorf("parameter name %q: want 1 to %d characters", trunc(k), MaxKeyLen)
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "", "", fmt.Errorf("parameter name %q: use letters, digits, '_', '-' and '.'", trunc(k))
		}
	}
	k = strings.ToLower(k)
	if len(v) > MaxValueLen {
		return "", "", fmt.Errorf("%s: value longer than %d bytes", k, MaxValueLen)
	}
	switch k {
	case KeyMAC:
		if v == "" {
			return k, "", nil
		}
		m, err := hwaddr.Parse(v)
		if err != nil {
			return "", "", fmt.Errorf("mac: %w", err) // hwaddr says what is wrong, as every entry point does
		}
		return k, m.String(), nil
	case KeyUUID:
		if v == "" {
			return k, "", nil
		}
		u, err := normalizeUUID(v)
		if err != nil {
			return "", "", err
		}
		return k, u, nil
	case KeyHostname:
		if v == "" {
			return k, "", nil
		}
		h, err := normalizeHostname(v)
		if err != nil {
			return "", "", err
		}
		return k, h, nil
	case KeyArch:
		if v == "" {
			return k, "", nil
		}
		a, err := NormalizeArch(v)
		if err != nil {
			return "", "", err
		}
		return k, a, nil
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".:_@/+=,-", c)) {
			return "", "", fmt.Errorf("%s %q: character %q not allowed", k, trunc(v), c)
		}
	}
	return k, v, nil
}

// normalizeUUID accepts 32 hex digits with or without the usual hyphens (and
// braces) and returns the lower-case 8-4-4-4-12 form.
func normalizeUUID(s string) (string, error) {
	t := strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	t = strings.ReplaceAll(t, "-", "")
	if len(t) != 32 {
		return "", fmt.Errorf("uuid %q: want 32 hex digits", trunc(s))
	}
	t = strings.ToLower(t)
	for _, c := range t {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("uuid %q: not hexadecimal", trunc(s))
		}
	}
	return t[0:8] + "-" + t[8:12] + "-" + t[12:16] + "-" + t[16:20] + "-" + t[20:], nil
}

// normalizeHostname checks that s is an RFC 1123 host name (dot-separated
// labels of 1 to 63 letters, digits and hyphens, no label starting or
// ending with a hyphen, 253 bytes at most) and returns it lower-cased,
// without one trailing dot.
func normalizeHostname(s string) (string, error) {
	h := strings.TrimSuffix(s, ".")
	if h == "" || len(h) > 253 {
		return "", fmt.Errorf("hostname %q: want 1 to 253 characters", trunc(s))
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("hostname %q: labels are 1 to 63 characters (RFC 1123)", trunc(s))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("hostname %q: a label cannot start or end with '-' (RFC 1123)", trunc(s))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("hostname %q: use letters, digits, '-' and '.' (RFC 1123)", trunc(s))
			}
		}
	}
	return strings.ToLower(h), nil
}

// canonicalUUID accepts only the 8-4-4-4-12 hexadecimal form (either
// case) and returns it lower-cased.
func canonicalUUID(s string) (string, error) {
	if len(s) != 36 {
		return "", fmt.Errorf("uuid %q: want the 8-4-4-4-12 hexadecimal form", trunc(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return "", fmt.Errorf("uuid %q: want the 8-4-4-4-12 hexadecimal form", trunc(s))
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", fmt.Errorf("uuid %q: not hexadecimal", trunc(s))
		}
	}
	return strings.ToLower(s), nil
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
