package grubcfg

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/profile"
)

func get(t testing.TB, h http.Handler, target string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://metalboot.test/grub", nil)
	req.URL.RawQuery = target
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	var served []string
	var mu sync.Mutex
	h := &Handler{
		Resolver: demoResolver(t),
		LocalBoot: func(m *profile.Machine) bool {
			return m.Hostname == "smpc.lab"
		},
		OnServe: func(_ *http.Request, m *profile.Machine, local bool) {
			mu.Lock()
			defer mu.Unlock()
			kind := "install"
			if local {
				kind = "local"
			}
			served = append(served, m.MAC.String()+" "+kind)
		},
	}
	rec := get(t, h, "mac=00:23:32:2f:40:3c")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	body := rec.Body.String()
	assert.Contains(t, body, "ignition?mac=00:23:32:2f:40:3c'")
	requireGRUBAccepts(t, body)
	var want bytes.Buffer
	require.NoError(t, Render(&want, resolve(t, demoResolver(t), "mac=00:23:32:2f:40:3c"), Options{}))
	assert.Equal(t, want.String(), body, "handler answers Render's output")

	rec = get(t, h, "mac=00:30:48:fb:e2:44")
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), "chainloader +1", "LocalBoot answered")
	requireGRUBAccepts(t, rec.Body.String())

	// The installed profile has no kernel: 404 with a reason, not 500.
	rec = get(t, h, "mac=00:23:32:2f:40:3c&os=installed")
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Contains(t, rec.Body.String(), "no boot.kernel")

	assert.Equal(t, []string{"00:23:32:2f:40:3c install", "00:30:48:fb:e2:44 local"}, served)
}

func TestHandlerBadInput(t *testing.T) {
	// The seed lab has a default group; an inventory without one answers 404.
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k"}}},
		Groups:   []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:01"}}},
	})
	require.NoError(t, err)
	noDefault := &Handler{Resolver: &profile.Resolver{Store: inv}}
	withDefault := &Handler{Resolver: seedResolver(t)}

	for _, tc := range []struct {
		h     http.Handler
		query string
		code  int
	}{
		{withDefault, "mac=;reboot", 400},
		{withDefault, "mac=zz", 400},
		{withDefault, "mac=" + url.QueryEscape(";reboot"), 400},
		{withDefault, "mac=00:23:32:2f:40:3c&mac=00:30:48:fb:e2:44", 400},
		{withDefault, "mac=00:23:32:2f:40:3c&os=a%00b", 400},
		{withDefault, "mac=%00", 400},
		{withDefault, "mac=00:23:32:2f:40:3c&os=" + url.QueryEscape("ïnstalled"), 400},
		{withDefault, "mac=" + strings.Repeat("a", 5000), 400},
		{withDefault, strings.Repeat("k=v&", 40), 400},
		{withDefault, "mac=00:23:32:2f:40:3c&" + url.QueryEscape("la bel") + "=x", 400},
		{withDefault, "uuid=not-a-uuid", 400},
		{withDefault, "mac=%zz", 400},
		{withDefault, "mac=00:23:32:2f:40:3c&hostname=" + url.QueryEscape("x'; reboot"), 400},
		{noDefault, "mac=52:54:00:00:00:02", 404},
		{noDefault, "", 404},
		{noDefault, "mac=52:54:00:00:00:01", 200},
		{withDefault, "mac=52:54:00:00:00:02", 200},
		{withDefault, "mac=00:23:32:2f:40:3c&os=installed", 404},
	} {
		rec := get(t, tc.h, tc.query)
		q := tc.query
		if len(q) > 60 {
			q = q[:60] + "…"
		}
		assert.Equal(t, tc.code, rec.Code, "%s: %s", q, rec.Body.String())
		if tc.code != 200 {
			line := strings.TrimSuffix(rec.Body.String(), "\n")
			assert.NotEmpty(t, line, q)
			assert.NotContains(t, line, "\n", "%s: one-line reason", q)
		}
	}

	req := httptest.NewRequest(http.MethodPost, "/grub?mac=00:23:32:2f:40:3c", nil)
	rec := httptest.NewRecorder()
	withDefault.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}

// TestHandlerRenderError: a profile GRUB cannot load (https kernel) is
// found by Check when the inventory loads; at boot the machine gets 404
// with the reason (there is no GRUB boot for it), never a 500.
func TestHandlerRenderError(t *testing.T) {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "https://x/k"}}},
		Groups:   []profile.Group{{ID: "g", Profile: "p"}},
	})
	require.NoError(t, err)
	var log bytes.Buffer
	h := &Handler{Resolver: &profile.Resolver{Store: inv}, Logger: slog.New(slog.NewTextHandler(&log, nil))}
	problems := Check(inv)
	require.Len(t, problems, 1)
	assert.ErrorIs(t, problems[0], ErrUnsupportedURL)
	assert.Contains(t, problems[0].Error(), `profile "p" (group "g") cannot be booted with GRUB`)
	rec := get(t, h, "mac=52:54:00:00:00:01")
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Contains(t, rec.Body.String(), "no GRUB boot for machine 52:54:00:00:00:01")
	assert.Contains(t, rec.Body.String(), "no TLS")
	assert.Contains(t, log.String(), "no TLS")
	assert.NotContains(t, log.String(), "level=ERROR", "not a server error")

	rec = get(t, &Handler{}, "mac=52:54:00:00:00:01")
	assert.Equal(t, http.StatusInternalServerError, rec.Code, "a Handler without Resolver is a programming error")
}

// TestHandlerOverHTTP serves through a real HTTP server: the body curl or
// GRUB would get is the whole configuration, with a Content-Length.
func TestHandlerOverHTTP(t *testing.T) {
	srv := httptest.NewServer(&Handler{Resolver: seedResolver(t)})
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/grub?mac=00:23:32:2f:40:3c")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.EqualValues(t, len(b), resp.ContentLength)
	assert.Contains(t, string(b), "ignition?mac=00:23:32:2f:40:3c'")
	requireGRUBAccepts(t, string(b))
}

func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		"mac=00:23:32:2f:40:3c", "mac=;reboot", "mac=zz", "mac=%00", "mac=a&mac=b",
		"mac=52:54:00:12:34:56&uuid=8a3b0c52-1d2e-4f5a-9b6c-7d8e9f0a1b2c", "os=installed&mac=00:30:48:fb:e2:44",
		"hostname=x%27%3Breboot", "label=%E2%98%83", "%zz", "=", "&&&", "uuid={8A3B0C52-1D2E-4F5A-9B6C-7D8E9F0A1B2C}",
	} {
		f.Add(s)
	}
	h := &Handler{Resolver: seedResolver(f)}
	bin := scriptCheckPath()
	f.Fuzz(func(t *testing.T, q string) {
		req := httptest.NewRequest(http.MethodGet, "http://metalboot.test/grub", nil)
		req.URL.RawQuery = q
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			toks, err := lexGRUB(rec.Body.String())
			require.NoError(t, err)
			for _, c := range commands(toks) {
				assert.NotEqual(t, "reboot", c[0])
			}
			if bin != "" {
				require.NoError(t, grubCheck(bin, rec.Body.String()), "query %q", q)
			}
		case 400, 404:
		default:
			t.Fatalf("query %q: status %d: %s", q, rec.Code, rec.Body.String())
		}
	})
}

func BenchmarkHandler(b *testing.B) {
	h := &Handler{Resolver: seedResolver(b)}
	req := httptest.NewRequest(http.MethodGet, "http://metalboot.test/grub?mac=00:23:32:2f:40:3c", nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			w.code = 0
			h.ServeHTTP(w, req)
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
		}
	})
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// TestHandlerErrorsForGRUB: GRUB runs whatever body /grub returns, so an
// error answered to GRUB is an echo of the reason (valid GRUB script, status
// kept); other clients get the plain one-line reason.
func TestHandlerErrorsForGRUB(t *testing.T) {
	h := &Handler{Resolver: demoResolver(t)}
	for _, q := range []string{"mac=zz", "mac=00:23:32:2f:40:3c&os=installed", "mac=00:23:32:2f:40:3c&mac=00:23:32:2f:40:3d"} {
		plain := get(t, h, q)
		require.GreaterOrEqual(t, plain.Code, 400, q)
		reason := strings.TrimSpace(plain.Body.String())

		req := httptest.NewRequest(http.MethodGet, "http://metalboot.test/grub?"+q, nil)
		req.Header.Set("User-Agent", "GRUB 2.06")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, plain.Code, rec.Code, q)
		body := rec.Body.String()
		assert.True(t, strings.HasPrefix(body, "echo 'metalboot: /grub answered "), "%q: %q", q, body)
		assert.Contains(t, body, strings.ReplaceAll(reason, "'", `'\''`), q)
		assert.Equal(t, strconv.Itoa(len(body)), rec.Header().Get("Content-Length"))
		requireGRUBAccepts(t, body)
	}
	// A success is untouched.
	req := httptest.NewRequest(http.MethodGet, "http://metalboot.test/grub?mac=00:23:32:2f:40:3c", nil)
	req.Header.Set("User-Agent", "GRUB 2.06")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, get(t, h, "mac=00:23:32:2f:40:3c").Body.String(), rec.Body.String())
}
