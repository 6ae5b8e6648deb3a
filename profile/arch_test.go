package profile_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

func TestNormalizeArch(t *testing.T) {
	for in, want := range map[string]string{
		"x86_64": "x86_64", "X86_64": "x86_64", "amd64": "x86_64",
		"arm64": "arm64", "ARM64": "arm64", "aarch64": "arm64",
		"i386": "i386", "arm": "arm", "arm32": "arm",
		"riscv64": "riscv64", "loong64": "loongarch64", "loongarch64": "loongarch64",
	} {
		got, err := profile.NormalizeArch(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "x86-64", "sparc64", "arm64 ", "efi-arm64", "11", "x86_64;reboot"} {
		_, err := profile.NormalizeArch(in)
		assert.Error(t, err, "%q", in)
	}
	_, err := profile.NormalizeArch("sparc64")
	assert.ErrorContains(t, err, "want one of i386, x86_64, arm, arm64, riscv64, loongarch64")
}

// TestParseQueryArch: arch= is a closed set (400 otherwise), normalised
// like mac=; an empty arch= (GRUB without $grub_cpu) is no attribute.
func TestParseQueryArch(t *testing.T) {
	a, err := profile.ParseQuery("mac=52:54:00:00:00:01&arch=aarch64")
	require.NoError(t, err)
	assert.Equal(t, "arm64", a["arch"])
	a, err = profile.ParseQuery("mac=52:54:00:00:00:01&ARCH=x86_64")
	require.NoError(t, err)
	assert.Equal(t, "x86_64", a["arch"])
	a, err = profile.ParseQuery("mac=52:54:00:00:00:01&arch=")
	require.NoError(t, err)
	assert.NotContains(t, a, "arch")
	for _, q := range []string{"arch=sparc64", "arch=arm64&arch=x86_64", "arch=efi-x64"} {
		_, err = profile.ParseQuery(q)
		assert.ErrorIs(t, err, profile.ErrBadRequest, q)
	}
}

// archInventory sends x86_64 and arm64 machines to different kernels from
// one group each, and arm64 machines that installed to disk to a third.
func archInventory(t *testing.T) *profile.Inventory {
	t.Helper()
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{
			{ID: "x86", Boot: profile.Boot{Kernel: "/assets/x86_64/vmlinuz"}},
			{ID: "arm", Boot: profile.Boot{Kernel: "/assets/arm64/vmlinuz", Args: []string{"arch={{.Labels.arch}}"}}},
			{ID: "disk", Boot: profile.Boot{Kernel: "/assets/localboot"}},
		},
		Groups: []profile.Group{
			{ID: "default", Profile: "x86"},
			{ID: "arm64", Profile: "arm", Selector: map[string]string{"arch": "AArch64"}},
			{ID: "arm64-installed", Profile: "disk", Selector: map[string]string{"arch": "arm64", "os": "installed"}},
			{ID: "installed", Profile: "disk", Selector: map[string]string{"os": "installed"}},
		},
	})
	require.NoError(t, err)
	return inv
}

func TestArchSelector(t *testing.T) {
	inv := archInventory(t)
	for _, g := range inv.Groups() {
		if g.ID == "arm64" {
			assert.Equal(t, map[string]string{"arch": "arm64"}, g.Selector, "the selector is normalised at load")
		}
	}
	for q, want := range map[string]string{
		"mac=52:54:00:00:00:02&arch=arm64":              "arm64",
		"mac=52:54:00:00:00:02&arch=aarch64":            "arm64",
		"mac=52:54:00:00:00:02&arch=x86_64":             "default",
		"mac=52:54:00:00:00:02&arch=i386":               "default",
		"mac=52:54:00:00:00:02":                         "default",
		"mac=52:54:00:00:00:02&arch=arm64&os=installed": "arm64-installed",
		"mac=52:54:00:00:00:02&os=installed":            "installed",
	} {
		m := resolve(t, inv, q)
		assert.Equal(t, want, m.Group.ID, q)
	}
	m := resolve(t, inv, "mac=52:54:00:00:00:02&arch=arm64")
	b, err := m.RenderBoot()
	require.NoError(t, err)
	assert.Equal(t, "/assets/arm64/vmlinuz", b.Kernel)
	assert.Equal(t, []string{"arch=arm64"}, b.Args)

	// A selector naming no known architecture fails the load.
	_, err = profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p"}},
		Groups:   []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"arch": "arm-64"}}},
	})
	require.ErrorIs(t, err, profile.ErrInvalid)
	assert.ErrorContains(t, err, `group "g": selector: arch "arm-64": want one of`)
}

// TestArchFromFacts: the architecture DHCP saw (Facts.Arch) selects the
// group when the request names none; the request's own wins; an invalid
// fact is dropped, not matched.
func TestArchFromFacts(t *testing.T) {
	inv := archInventory(t)
	facts := map[hwaddr.MAC]profile.Facts{
		hwaddr.MustParse("52:54:00:00:00:0a"): {Arch: "arm64"},
		hwaddr.MustParse("52:54:00:00:00:0b"): {Arch: "x86_64"},
		hwaddr.MustParse("52:54:00:00:00:0c"): {Arch: "sparc\n64"},
	}
	r := &profile.Resolver{Store: inv, BaseURL: "http://deploy.lab:8080",
		Facts: profile.FactSourceFunc(func(_ context.Context, m hwaddr.MAC) (profile.Facts, bool) {
			f, ok := facts[m]
			return f, ok
		})}
	for q, want := range map[string]string{
		"mac=52:54:00:00:00:0a":              "arm64",
		"mac=52:54:00:00:00:0a&os=installed": "arm64-installed",
		"mac=52:54:00:00:00:0a&arch=x86_64":  "default",
		"mac=52:54:00:00:00:0b":              "default",
		"mac=52:54:00:00:00:0b&arch=arm64":   "arm64",
		"mac=52:54:00:00:00:0c":              "default",
		"mac=52:54:00:00:00:0d":              "default",
	} {
		attrs, err := profile.ParseQuery(q)
		require.NoError(t, err)
		m, err := r.Resolve(context.Background(), attrs, q)
		require.NoError(t, err, q)
		assert.Equal(t, want, m.Group.ID, q)
		if want == "arm64" {
			assert.Equal(t, "arm64", m.Data().Labels["arch"], q)
		}
		if q == "mac=52:54:00:00:00:0c" {
			assert.NotContains(t, m.Attrs, "arch", "an invalid fact is dropped")
		}
	}
	// Resolve normalises what a library caller passes, arch included.
	_, err := r.Resolve(context.Background(), map[string]string{"mac": "52:54:00:00:00:0a", "arch": "vax"}, "")
	assert.True(t, errors.Is(err, profile.ErrBadRequest), "%v", err)
}

// TestMiddlewareArch: over HTTP, an unknown architecture is 400 with the
// reason; the demo's arm.lab is its ARM64 group with arch=arm64 and the
// default group without.
func TestMiddlewareArch(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	h := (&profile.Resolver{Store: st, BaseURL: "http://x"}).Middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m, _ := profile.FromContext(req.Context())
		_, _ = w.Write([]byte(m.Group.ID))
	}))
	for url, want := range map[string]string{
		"/grub?mac=d8:3a:dd:48:2b:10&arch=arm64":  "200 arm",
		"/grub?mac=d8:3a:dd:48:2b:10&arch=x86_64": "200 default",
		"/grub?mac=d8:3a:dd:48:2b:10":             "200 default",
		"/grub?mac=00:23:32:2f:40:3c&arch=i386":   "200 mp",
		"/grub?mac=d8:3a:dd:48:2b:10&arch=sparc":  `400 bad request: arch "sparc": want one of`,
		"/grub?mac=d8:3a:dd:48:2b:10&arch=arm%3B": `400 bad request: arch "arm;"`,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
		got := strings.TrimSpace(rec.Body.String())
		code, body, _ := strings.Cut(want, " ")
		assert.Equal(t, code, strconv.Itoa(rec.Code), url)
		assert.True(t, strings.HasPrefix(got, body), "%s: %q", url, got)
	}
}
