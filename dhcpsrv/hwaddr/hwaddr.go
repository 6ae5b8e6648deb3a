// Package hwaddr parses and normalises Ethernet MAC addresses the way every
// metalboot package needs them: one canonical value for the many spellings
// that firmware, boot loaders, DHCP servers and people use.
//
// MAC is the type of a machine's address in every exported metalboot API
// (DHCP leases and reservations, inventory facts, the Ignition guard, GRUB
// first stages), so code outside this module can implement those
// interfaces. hwaddr is a leaf: it imports only the standard library, and
// every metalboot package may import it. It lives under dhcpsrv because a
// MAC is what DHCP identifies a client by (chaddr); importing it does not
// import the DHCP server.
package hwaddr

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid MAC address")

// MAC is a 48-bit Ethernet address. The zero value means "no address"; MAC is
// comparable and can be used as a map key.
type MAC [6]byte

// Parse accepts the spellings in common use and returns the address:
//
//	00:23:32:2F:40:3C   colon separated, any case (also single-digit groups 0:23:…)
//	00-23-32-2f-40-3c   hyphen separated (iPXE ${mac:hexhyp}, GRUB grub.cfg-01-… names)
//	0023.322f.403c      Cisco dotted groups of four
//	0023322f403c        twelve hex digits, no separator (${mac:hexraw})
//
// Anything else, including 64-bit addresses, mixed separators and white
// space or anything else around the address (a request's "mac=…%0A"), is
// an error wrapping ErrInvalid.
func Parse(s string) (MAC, error) {
	var m MAC
	orig := s
	fail := func(reason string) (MAC, error) {
		return MAC{}, fmt.Errorf("%w %q: %s", ErrInvalid, orig, reason)
	}
	if s == "" {
		return fail("empty")
	}
	switch {
	case strings.ContainsAny(s, ":-"):
		sep := ":"
		if strings.Contains(s, "-") {
			if strings.Contains(s, ":") {
				return fail("mixed separators")
			}
			sep = "-"
		}
		parts := strings.Split(s, sep)
		if len(parts) != 6 {
			return fail("want 6 groups")
		}
		for i, p := range parts {
			if len(p) < 1 || len(p) > 2 {
				return fail("each group must have 1 or 2 hex digits")
			}
			b, ok := hexByte(p)
			if !ok {
				return fail("not hexadecimal")
			}
			m[i] = b
		}
		return m, nil
	case strings.Contains(s, "."):
		parts := strings.Split(s, ".")
		if len(parts) != 3 {
			return fail("want 3 dotted groups of 4 hex digits")
		}
		for i, p := range parts {
			if len(p) != 4 {
				return fail("want 3 dotted groups of 4 hex digits")
			}
			hi, ok1 := hexByte(p[:2])
			lo, ok2 := hexByte(p[2:])
			if !ok1 || !ok2 {
				return fail("not hexadecimal")
			}
			m[2*i], m[2*i+1] = hi, lo
		}
		return m, nil
	default:
		if len(s) != 12 {
			return fail("want 12 hex digits")
		}
		for i := 0; i < 6; i++ {
			b, ok := hexByte(s[2*i : 2*i+2])
			if !ok {
				return fail("not hexadecimal")
			}
			m[i] = b
		}
		return m, nil
	}
}

// MustParse is Parse for constants in tests and examples; it panics on error.
func MustParse(s string) MAC {
	m, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return m
}

// FromHardwareAddr converts a 6-byte net.HardwareAddr.
func FromHardwareAddr(h net.HardwareAddr) (MAC, error) {
	var m MAC
	if len(h) != 6 {
		return m, fmt.Errorf("%w: %d bytes, want 6", ErrInvalid, len(h))
	}
	copy(m[:], h)
	return m, nil
}

// String is the canonical form: lower case, colon separated.
func (m MAC) String() string { return m.format(':') }

// Hyphen is the lower-case hyphen form, as iPXE's ${mac:hexhyp}.
func (m MAC) Hyphen() string { return m.format('-') }

// Raw is the twelve lower-case hex digits without separator (${mac:hexraw}).
func (m MAC) Raw() string {
	const hexd = "0123456789abcdef"
	b := make([]byte, 12)
	for i, x := range m {
		b[2*i], b[2*i+1] = hexd[x>>4], hexd[x&0xf]
	}
	return string(b)
}

// IsZero reports whether m is the zero value (no address).
func (m MAC) IsZero() bool { return m == MAC{} }

// HardwareAddr returns m as a net.HardwareAddr.
func (m MAC) HardwareAddr() net.HardwareAddr { return net.HardwareAddr(m[:]) }

// MarshalText implements encoding.TextMarshaler with the canonical form.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with Parse.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

func (m MAC) format(sep byte) string {
	const hexd = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i, x := range m {
		if i > 0 {
			b = append(b, sep)
		}
		b = append(b, hexd[x>>4], hexd[x&0xf])
	}
	return string(b)
}

func hexByte(s string) (byte, bool) {
	var v byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | c
	}
	return v, true
}
