package profile

import (
	"errors"
	"fmt"
)

// ErrBadValue is wrapped by every error about a value from the network (a
// request attribute, a fact such as the DHCP hostname) that cannot be
// encoded for the format it is rendered into, or that fails the strict
// validation a template using it in logic requires. It is the request's
// problem, not the template's: HTTP handlers answer 400.
var ErrBadValue = errors.New("value from the network cannot be rendered")

// ValueError is a value from the network that cannot be rendered. It
// wraps ErrBadValue.
type ValueError struct {
	// Field names the template field, e.g. "Hostname", "Labels.rack" or
	// "request.query.os".
	Field string
	// Value is the offending value.
	Value string
	// Format is what it was to be rendered into, e.g. "kernel command
	// line".
	Format string
	// Reason says why it cannot be.
	Reason string
}

// Error names the field, the value (quoted, at most 60 bytes), the format
// and the reason, on one line.
func (e *ValueError) Error() string {
	return fmt.Sprintf("%s %.60q cannot be rendered into a %s: %s", e.Field, e.Value, e.Format, e.Reason)
}

// Unwrap returns ErrBadValue.
func (e *ValueError) Unwrap() error { return ErrBadValue }
