package ipxe

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

func get(t testing.TB, h http.Handler, query string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ipxe?"+query, nil))
	return rec
}

// TestHandlerStatus: /ipxe answers as /grub does, from the same
// inventory: 400 for a malformed query, 404 when no group matches or the
// profile boots nothing, 200 with the script otherwise.
func TestHandlerStatus(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	var served []string
	h := &Handler{Resolver: &profile.Resolver{Store: st, BaseURL: "http://172.22.10.2:8080"},
		OnServe: func(r *http.Request, m *profile.Machine, local bool) { served = append(served, m.MAC.String()) }}
	for q, code := range map[string]int{
		"mac=00:23:32:2f:40:3c":               200,
		"mac=00-23-32-2F-40-3C&uuid=&serial=": 200,
		"mac=00:23:32:2f:40:3c&os=installed":  404, // the demo's installed profile has no kernel
		"mac=;reboot":                         400,
		"mac=nope":                            400,
		"mac=00:23:32:2f:40:3c&x=a%20b":       400,
		"mac=00:23:32:2f:40:3c&mac=x":         400,
	} {
		rec := get(t, h, q)
		assert.Equal(t, code, rec.Code, "%s: %s", q, rec.Body.String())
		if code == 200 {
			assert.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
			assert.True(t, strings.HasPrefix(rec.Body.String(), "#!ipxe\n"), q)
			words(t, rec.Body.String(), nil)
		} else {
			assert.Equal(t, 1, strings.Count(rec.Body.String(), "\n"), "%s: one-line reason", q)
		}
	}
	assert.Len(t, served, 2)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ipxe?mac=00:23:32:2f:40:3c", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/ipxe?mac=00:23:32:2f:40:3c", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Zero(t, rec.Body.Len())
	assert.NotEmpty(t, rec.Header().Get("Content-Length"))

	rec = get(t, &Handler{}, "mac=00:23:32:2f:40:3c")
	assert.Equal(t, http.StatusInternalServerError, rec.Code, "no Resolver and no machine in the context")
}

// TestHandlerLocalBoot: an installed machine gets a script that returns to
// the firmware with an error, so that it boots its next boot option.
func TestHandlerLocalBoot(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	var kinds []bool
	h := &Handler{Resolver: &profile.Resolver{Store: st},
		LocalBoot: func(*profile.Machine) bool { return true },
		OnServe:   func(_ *http.Request, _ *profile.Machine, local bool) { kinds = append(kinds, local) }}
	rec := get(t, h, "mac=00:23:32:2f:40:3c")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, []string{
		`["echo" "metalboot:" "machine" "00:23:32:2f:40:3c" "(mp.lab)," "group" "mp," "profile" "install"]`,
		`["echo" "metalboot:" "installed;" "returning" "to" "the" "firmware" "to" "boot" "the" "next" "boot" "option" "(local" "disk)"]`,
		`["exit" "1"]`,
	}, words(t, rec.Body.String(), nil))
	assert.Equal(t, []bool{true}, kinds)
}

// TestHandlerBadValue: a value from the request that cannot be written is
// the request's fault (400, with the field), a profile iPXE cannot boot
// is 404 with the reason, never a 500.
func TestHandlerBadValue(t *testing.T) {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{
			{ID: "p", Boot: profile.Boot{Kernel: "/k", Args: []string{"{{index .Labels \"extra\"}}"}}},
			{ID: "grubonly", Boot: profile.Boot{Kernel: "(hd0,gpt2)/vmlinuz"}},
		},
		Groups: []profile.Group{{ID: "d", Profile: "p"}, {ID: "g", Profile: "grubonly", Selector: map[string]string{"os": "grub"}}},
	})
	require.NoError(t, err)
	var logs bytes.Buffer
	h := &Handler{Resolver: &profile.Resolver{Store: inv}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	rec := get(t, h, "mac=52:54:00:00:00:01&extra=--")
	assert.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), "Labels.extra")
	rec = get(t, h, "mac=52:54:00:00:00:01&os=grub")
	assert.Equal(t, http.StatusNotFound, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), "no iPXE boot for machine 52:54:00:00:00:01")
	assert.Contains(t, rec.Body.String(), "GRUB device path")
	assert.NotContains(t, logs.String(), "level=ERROR")
}
