package dhcpsrv

import (
	"strconv"
	"strings"
)

// Limits of RFC 1123 / RFC 1035 host names.
const (
	maxHostnameLen = 253
	maxLabelLen    = 63
)

// ValidHostname checks that s is an RFC 1123 host name and returns it in
// canonical form. A host name is one or more labels separated by dots;
// each label is 1–63 letters, digits and hyphens and neither starts nor
// ends with a hyphen; the whole name is at most 253 bytes. One trailing
// dot (a fully qualified name) is tolerated and removed; letters are
// lowered. Anything else (spaces, underscores, control characters,
// non-ASCII, empty labels, the empty string) returns ("", false).
//
// The server applies it to DHCP option 12 before the value is stored in a
// [Lease] or echoed to the client, and to host names read back from a
// lease store, because the name travels on into DNS records, Ignition
// configs and kernel command lines.
func ValidHostname(s string) (string, bool) {
	if len(s) > 1 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if len(s) == 0 || len(s) > maxHostnameLen {
		return "", false
	}
	upper := false
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			case c >= 'A' && c <= 'Z':
				upper = true
			default:
				return "", false
			}
			continue
		}
		label := s[start:i]
		if len(label) == 0 || len(label) > maxLabelLen || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		start = i + 1
	}
	if upper {
		s = strings.ToLower(s)
	}
	return s, true
}

// ValidUUID reports whether s is a client identifier as this package
// writes it into [Lease].UUID from option 97: an SMBIOS UUID in lower-case
// 8-4-4-4-12 hex form, or the option's bytes in lower-case hex (an even
// number of digits, at most 255 bytes' worth). The empty string (no
// identifier) is not valid.
func ValidUUID(s string) bool {
	return isUUIDForm(s) || isHexBytes(s)
}

// isUUIDForm reports whether s is a lower-case 8-4-4-4-12 hex UUID.
func isUUIDForm(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isLowerHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// isHexBytes reports whether s is 1 to 255 bytes in lower-case hex.
func isHexBytes(s string) bool {
	if len(s) == 0 || len(s)%2 != 0 || len(s) > 2*255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLowerHex(s[i]) {
			return false
		}
	}
	return true
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// maxLogValue bounds how much of an untrusted value a log line shows.
const maxLogValue = 256

// quoteForLog returns v in Go quoted form (%q), cut to maxLogValue bytes
// first, so a hostile value can neither forge log lines nor flood them.
func quoteForLog(v string) string {
	if len(v) > maxLogValue {
		return strconv.Quote(v[:maxLogValue]) + "…"
	}
	return strconv.Quote(v)
}

// checkLease validates the strings of a lease that came from a store (the
// journal of an older version, or someone else's LeaseStore): a host name
// or UUID that fails validation is removed. It reports what it removed.
func checkLease(l Lease) (out Lease, badHost, badUUID bool) {
	if l.Hostname != "" {
		if h, ok := ValidHostname(l.Hostname); ok {
			l.Hostname = h
		} else {
			badHost = true
			l.Hostname = ""
		}
	}
	if l.UUID != "" && !ValidUUID(l.UUID) {
		badUUID = true
		l.UUID = ""
	}
	return l, badHost, badUUID
}
