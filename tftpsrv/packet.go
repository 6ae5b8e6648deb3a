package tftpsrv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TFTP opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// TFTP error codes (RFC 1350, RFC 2347).
const (
	errCodeUndefined     = 0
	errCodeNotFound      = 1
	errCodeAccess        = 2
	errCodeIllegalOp     = 4
	errCodeUnknownTID    = 5
	errCodeOptionRefused = 8
)

// Limits of the negotiated options.
const (
	minBlockSize   = 8     // RFC 2348
	maxBlockSize   = 65464 // RFC 2348
	defBlockSize   = 512   // RFC 1350
	maxWindowSize  = 65535 // RFC 7440
	maxOptTimeout  = 255   // RFC 2349, seconds
	maxOptionCount = 16    // more options than any client sends
)

// errMalformed reports a packet on the listening port that is not a
// well-formed request.
var errMalformed = errors.New("tftpsrv: malformed request")

// request is a parsed RRQ or WRQ packet.
type request struct {
	op       uint16
	filename string // as sent, not yet checked
	mode     string // lower case: "octet", "netascii" or "mail"
	// options holds the options in the order sent, names lower case;
	// repeated names keep their first value.
	options []option
}

type option struct{ name, value string }

// opt returns the value of the option name and whether the client sent it.
func (r *request) opt(name string) (string, bool) {
	for _, o := range r.options {
		if o.name == name {
			return o.value, true
		}
	}
	return "", false
}

// parseRequest parses a read or write request (RFC 1350 with RFC 2347
// options). It never panics; anything else is errMalformed with a reason.
func parseRequest(p []byte) (*request, error) {
	if len(p) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", errMalformed, len(p))
	}
	op := binary.BigEndian.Uint16(p)
	if op != opRRQ && op != opWRQ {
		return nil, fmt.Errorf("%w: opcode %d on the listening port", errMalformed, op)
	}
	fields := bytes.Split(p[2:], []byte{0})
	// A well-formed request ends with a NUL, so the last field is empty.
	if len(fields) < 3 || len(fields[len(fields)-1]) != 0 {
		return nil, fmt.Errorf("%w: fields not NUL-terminated", errMalformed)
	}
	fields = fields[:len(fields)-1]
	r := &request{op: op, filename: string(fields[0]), mode: strings.ToLower(string(fields[1]))}
	switch r.mode {
	case "octet", "netascii", "mail":
	default:
		return nil, fmt.Errorf("%w: transfer mode %q", errMalformed, truncate(r.mode))
	}
	opts := fields[2:]
	if len(opts)%2 != 0 {
		// Some clients pad with a stray NUL; a trailing empty name is
		// harmless, anything else is not.
		if len(opts[len(opts)-1]) != 0 {
			return nil, fmt.Errorf("%w: option %q without a value", errMalformed, truncate(string(opts[len(opts)-1])))
		}
		opts = opts[:len(opts)-1]
	}
	if len(opts)/2 > maxOptionCount {
		return nil, fmt.Errorf("%w: %d options", errMalformed, len(opts)/2)
	}
	for i := 0; i+1 < len(opts); i += 2 {
		name := strings.ToLower(string(opts[i]))
		if name == "" {
			continue
		}
		if _, dup := r.opt(name); dup {
			continue
		}
		r.options = append(r.options, option{name, string(opts[i+1])})
	}
	return r, nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// parseOptInt parses a decimal option value in [lo, hi]. Values above hi
// are clamped to hi (the server may answer a smaller value, RFC 2347);
// anything else is refused (ok false) and the option is ignored.
func parseOptInt(v string, lo, hi int) (int, bool) {
	if v == "" || len(v) > 10 {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo {
		return 0, false
	}
	return min(n, hi), true
}

// errorPacket builds an ERROR packet.
func errorPacket(code uint16, msg string) []byte {
	b := make([]byte, 0, 5+len(msg))
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	b = append(b, msg...)
	return append(b, 0)
}

// oackPacket builds an OACK packet with the options in order.
func oackPacket(opts []option) []byte {
	b := binary.BigEndian.AppendUint16(nil, opOACK)
	for _, o := range opts {
		b = append(b, o.name...)
		b = append(b, 0)
		b = append(b, o.value...)
		b = append(b, 0)
	}
	return b
}

// errorCode is the TFTP error code sent for err (see clientMessage for the
// text).
func errorCode(err error) uint16 {
	switch msg := clientMessage(err); {
	case msg == "file not found":
		return errCodeNotFound
	case strings.HasPrefix(msg, "access violation"):
		return errCodeAccess
	default:
		return errCodeUndefined
	}
}
