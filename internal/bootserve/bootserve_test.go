package bootserve_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/metalboot/metalboot/internal/bootserve"
	"github.com/metalboot/metalboot/profile"
)

var (
	errNoKernel = errors.New("no kernel")
	errBadPath  = errors.New("bad path")
)

// Each kind of render failure gets its status, its one-line reason and
// its log level; a value from the request wins over a profile the loader
// cannot boot when an error is both.
func TestFail(t *testing.T) {
	l := bootserve.Loader{
		Name: "GRUB", What: "GRUB configuration", Log: "grub config", NoKernel: errNoKernel,
		Unbootable: func(err error) bool { return errors.Is(err, errBadPath) },
		Describe:   func(*profile.Machine) string { return "machine 52:54:00:12:34:56" },
	}
	ve := &profile.ValueError{Field: "Hostname", Value: "a b", Format: "kernel command line", Reason: "white space"}
	for _, tc := range []struct {
		err         error
		code        int
		body, level string
	}{
		{fmt.Errorf("render: %w", errNoKernel), http.StatusNotFound, "no network boot for machine 52:54:00:12:34:56: the profile has no boot.kernel\n", ""},
		{fmt.Errorf("render: %w", errBadPath), http.StatusNotFound, "no GRUB boot for machine 52:54:00:12:34:56: render: bad path\n", "level=WARN"},
		{fmt.Errorf("render: %w", ve), http.StatusBadRequest, "bad request: cannot render the GRUB configuration of machine 52:54:00:12:34:56: " + ve.Error() + "\n", "level=INFO"},
		{errors.Join(ve, errBadPath), http.StatusBadRequest, "bad request: cannot render the GRUB configuration of machine 52:54:00:12:34:56: " + ve.Error() + "\n", "level=INFO"},
		{errors.New("template exploded"), http.StatusInternalServerError, "cannot render the GRUB configuration of machine 52:54:00:12:34:56 (see the server log)\n", "level=ERROR"},
	} {
		var logs bytes.Buffer
		w := httptest.NewRecorder()
		l.Fail(w, slog.New(slog.NewTextHandler(&logs, nil)), nil, tc.err)
		assert.Equal(t, tc.code, w.Code, "%v", tc.err)
		assert.Equal(t, tc.body, w.Body.String(), "%v", tc.err)
		if tc.level == "" {
			assert.Empty(t, logs.String(), "%v", tc.err)
		} else {
			assert.Contains(t, logs.String(), tc.level, "%v", tc.err)
			assert.Contains(t, logs.String(), "machine=", "%v", tc.err)
		}
	}
}
