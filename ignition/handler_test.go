package ignition

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

const (
	mpMAC   = "00:23:32:2f:40:3c"
	smpcMAC = "00:30:48:fb:e2:44"
)

func seedLabHandler(t *testing.T) *Handler {
	t.Helper()
	if _, err := os.Stat(seedLab); err != nil {
		t.Skipf("seed-lab fixture not found at %s", seedLab)
	}
	h := &Handler{}
	st, err := profile.OpenFS(os.DirFS(seedLab), h.Check, nil)
	require.NoError(t, err)
	h.Resolver = &profile.Resolver{Store: st, BaseURL: "http://deploy.lab:8080"}
	return h
}

func demoHandler(t testing.TB) *Handler {
	t.Helper()
	h := &Handler{}
	st, err := profile.OpenFS(demo.FS(), h.Check, nil)
	require.NoError(t, err)
	h.Resolver = &profile.Resolver{Store: st, BaseURL: "http://172.22.10.2:8080"}
	return h
}

func get(t testing.TB, h http.Handler, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

func ok(t testing.TB, h http.Handler, target string) config {
	t.Helper()
	rec := get(t, h, target)
	require.Equal(t, http.StatusOK, rec.Code, "%s: %s", target, rec.Body)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	return decodeConfig(t, rec.Body.Bytes())
}

// TestSeedLab checks the answers the seed lab's README asks for.
func TestSeedLab(t *testing.T) {
	h := seedLabHandler(t)

	c := ok(t, h, "/ignition?mac="+smpcMAC)
	assert.Equal(t, "3.3.0", c.Ignition.Version, "served as Butane's flatcar 1.0.0 emits it")
	script, mode, found := c.file(t, "/opt/installer")
	require.True(t, found)
	assert.Equal(t, 0o500, mode)
	bashSyntax(t, script)
	assert.Contains(t, script, "flatcar-install -d /dev/sdb -C stable -V 1409.5.0 -i ignition.json -b http://deploy.lab:8080/assets/coreos\n")
	assert.Contains(t, script, `"http://deploy.lab:8080/ignition?mac=00:30:48:fb:e2:44&os=installed"`)
	_, enabled, found := c.unit("installer.service")
	assert.True(t, found && enabled)
	assert.Equal(t, []string{"debug"}, c.users())

	c = ok(t, h, "/ignition?mac="+smpcMAC+"&os=installed")
	assert.Equal(t, []string{"debug"}, c.users())
	assert.Empty(t, c.Storage.Files, "installed config: debug user only")
	assert.Empty(t, c.Systemd.Units)

	// Any spelling of the MAC is the same machine; the template sees the
	// canonical form.
	c = ok(t, h, "/ignition?mac=00-30-48-FB-E2-44")
	script, _, _ = c.file(t, "/opt/installer")
	assert.Contains(t, script, "-d /dev/sdb ")
	assert.Contains(t, script, "mac=00:30:48:fb:e2:44&os=installed")

	c = ok(t, h, "/ignition?mac="+mpMAC)
	script, _, _ = c.file(t, "/opt/installer")
	assert.Contains(t, script, "flatcar-install -d /dev/sda ")
	bashSyntax(t, script)

	// What the lab's GRUB sent with the iPXE-style profile: no MAC, so no
	// installer that would fetch "?mac=&os=installed".
	rec := get(t, h, "/ignition?uuid=&mac=")
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Contains(t, rec.Body.String(), `missing query parameter "mac"`)

	// The default profile, with GRUB's empty uuid= and the iPXE-style
	// hyphenated MAC.
	c = ok(t, h, "/ignition?uuid=&mac=52-54-00-12-34-56")
	script, _, _ = c.file(t, "/opt/installer")
	assert.Contains(t, script, "flatcar-install -d /dev/sda ")
	assert.Contains(t, script, "mac=52:54:00:12:34:56&os=installed")
}

// TestDemoValidates runs Ignition's own validator on every config the
// demo inventory serves, fetched over HTTP by curl.
func TestDemoValidates(t *testing.T) {
	h := demoHandler(t)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	for _, tc := range []struct {
		query     string
		disk      string // "" for an installed config
		hostname  string
		installer bool
	}{
		{"mac=" + smpcMAC, "/dev/sdb", "", true},
		{"mac=" + mpMAC, "/dev/sda", "", true},
		{"mac=52:54:00:00:00:01", "/dev/sda", "", true},
		{"mac=" + smpcMAC + "&os=installed", "", "smpc.lab", false},
		{"mac=" + mpMAC + "&os=installed", "", "mp.lab", false},
	} {
		t.Run(tc.query, func(t *testing.T) {
			out, err := exec.Command(curl, "--silent", "--show-error", "--fail", "-g", srv.URL+"/ignition?"+tc.query).Output()
			require.NoError(t, err)
			ignitionValidate(t, out)
			c := decodeConfig(t, out)
			assert.Equal(t, "3.3.0", c.Ignition.Version)
			script, _, found := c.file(t, InstallerPath)
			assert.Equal(t, tc.installer, found)
			if tc.installer {
				bashSyntax(t, script)
				assert.Contains(t, script, "flatcar-install -d "+tc.disk+" -C stable -V current -i /tmp/ignition.json -b http://172.22.10.2:8080/assets/flatcar\n")
				mac := strings.TrimPrefix(tc.query, "mac=")
				assert.Contains(t, script, `"http://172.22.10.2:8080/ignition?mac=`+mac+`&os=installed"`)
			} else {
				host, _, found := c.file(t, "/etc/hostname")
				require.True(t, found)
				assert.Equal(t, tc.hostname, host)
			}
		})
	}
}

func TestStatusCodes(t *testing.T) {
	h := demoHandler(t)
	for target, code := range map[string]int{
		"/ignition?mac=bad":                            http.StatusBadRequest,
		"/ignition?mac=00:30:48:fb:e2:44&mac=" + mpMAC: http.StatusBadRequest,
		"/ignition?uuid=xyz&mac=" + smpcMAC:            http.StatusBadRequest,
		"/ignition?mac=%00":                            http.StatusBadRequest,
		"/ignition?mac=" + strings.Repeat("a", 5000):   http.StatusBadRequest,
		"/ignition?mac=" + smpcMAC + "&x=%3Cscript%3E": http.StatusBadRequest,
	} {
		rec := get(t, h, target)
		assert.Equal(t, code, rec.Code, "%.80s: %s", target, rec.Body)
		assert.NotContains(t, rec.Header().Get("Content-Type"), "json")
		assert.Equal(t, 1, strings.Count(rec.Body.String(), "\n"), "one-line reason")
	}

	// The demo's template uses {{.MAC}}: without a MAC, no installer that
	// would fetch "?mac=&os=installed".
	for _, q := range []string{"", "mac=", "uuid=4c4c4544-0000-1000-8000-000000000001"} {
		rec := get(t, h, "/ignition?"+q)
		assert.Equal(t, http.StatusBadRequest, rec.Code, q)
		assert.Contains(t, rec.Body.String(), `missing query parameter "mac"`, q)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ignition?mac="+smpcMAC, nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/ignition?mac="+smpcMAC, nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Empty(t, rec.Body.Bytes())
	assert.NotEmpty(t, rec.Header().Get("Content-Length"))
}

// memInventory is a store with a default group, a group whose profile has
// no ignition_id, and a group whose template only breaks at serve time.
func memStore(t *testing.T, groups ...profile.Group) profile.Store {
	t.Helper()
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{
			{ID: "boot-only", Boot: profile.Boot{Kernel: "/assets/vmlinuz"}},
			{ID: "installed", IgnitionID: "installed.yaml.tmpl"},
			{ID: "broken", IgnitionID: "broken.yaml.tmpl"},
		},
		Groups: groups,
		Templates: map[string][]byte{
			"installed.yaml.tmpl": []byte("variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/hostname\n      contents:\n        inline: {{.Hostname}}\n"),
			"broken.yaml.tmpl":    []byte("variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: etc/relative\n"),
		},
	})
	require.NoError(t, err)
	return inv
}

func TestNotFound(t *testing.T) {
	st := memStore(t,
		profile.Group{ID: "bootonly", Profile: "boot-only", Selector: map[string]string{"mac": smpcMAC}},
		profile.Group{ID: "inst", Profile: "installed", Selector: map[string]string{"mac": mpMAC}},
	)
	h := &Handler{Resolver: &profile.Resolver{Store: st}}
	rec := get(t, h, "/ignition?mac=52:54:00:00:00:01")
	assert.Equal(t, http.StatusNotFound, rec.Code, "no group matches: %s", rec.Body)
	rec = get(t, h, "/ignition?mac="+smpcMAC)
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Contains(t, rec.Body.String(), `profile has no ignition_id: profile "boot-only"`)
}

func TestBrokenAndRequestValues(t *testing.T) {
	st := memStore(t,
		profile.Group{ID: "broken", Profile: "broken", Selector: map[string]string{"mac": smpcMAC}, Source: "groups/broken.json"},
		profile.Group{ID: "inst", Profile: "installed", Selector: map[string]string{"mac": mpMAC}},
	)
	require.Error(t, Check(st.Inventory()), "Check finds the broken template")
	var logs bytes.Buffer
	h := &Handler{Resolver: &profile.Resolver{Store: st}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}

	// Served anyway (no Check at load): 500, a short reason naming the
	// file; the log has the line and Ignition's message.
	rec := get(t, h, "/ignition?mac="+smpcMAC)
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.Equal(t, "ignition config not available: ignition/broken.yaml.tmpl line 5: translate failed (details in the server log)\n", rec.Body.String())
	assert.Contains(t, logs.String(), "level=ERROR")
	assert.Contains(t, logs.String(), "ignition/broken.yaml.tmpl line 5")
	assert.Contains(t, logs.String(), "path not absolute")

	// A sound template broken by the request's own values: 400.
	rec = get(t, h, "/ignition?mac="+mpMAC+"&hostname=@x")
	assert.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	c := ok(t, h, "/ignition?mac="+mpMAC+"&hostname=mp.lab")
	host, _, _ := c.file(t, "/etc/hostname")
	assert.Equal(t, "mp.lab", host)
}

type leases map[hwaddr.MAC]netip.Addr

func (l leases) Allowed(_ context.Context, mac hwaddr.MAC, remote netip.Addr) bool {
	return l[mac] == remote
}

func TestGuardAndOnServe(t *testing.T) {
	h := demoHandler(t)
	h.Guard = leases{hwaddr.MustParse(smpcMAC): netip.MustParseAddr("172.22.10.54")}
	var mu sync.Mutex
	var served []string
	h.OnServe = func(r *http.Request, m *profile.Machine) {
		mu.Lock()
		defer mu.Unlock()
		served = append(served, m.MAC.String()+" os="+m.Attrs["os"])
	}
	req := func(remote, query string) int {
		r := httptest.NewRequest(http.MethodGet, "/ignition?"+query, nil)
		r.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	assert.Equal(t, http.StatusOK, req("172.22.10.54:41000", "mac="+smpcMAC))
	assert.Equal(t, http.StatusOK, req("[::ffff:172.22.10.54]:41000", "mac="+smpcMAC+"&os=installed"))
	assert.Equal(t, http.StatusForbidden, req("172.22.10.99:41000", "mac="+smpcMAC))
	assert.Equal(t, http.StatusForbidden, req("172.22.10.54:41000", "mac="+mpMAC), "no lease for mp")
	assert.Equal(t, []string{smpcMAC + " os=", smpcMAC + " os=installed"}, served)
}

// TestGuardGetsRequestContext: the guard runs with the request's context,
// and a guard that cannot decide in time (here: the request's context has
// ended) refuses.
func TestGuardGetsRequestContext(t *testing.T) {
	h := demoHandler(t)
	type key struct{}
	var got []any
	h.Guard = GuardFunc(func(ctx context.Context, mac hwaddr.MAC, remote netip.Addr) bool {
		got = append(got, ctx.Value(key{}))
		return ctx.Err() == nil
	})
	do := func(ctx context.Context) int {
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/ignition?mac="+smpcMAC, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	assert.Equal(t, http.StatusOK, do(context.WithValue(context.Background(), key{}, "request-1")))
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "request-2"))
	cancel()
	assert.Equal(t, http.StatusForbidden, do(ctx))
	assert.Equal(t, []any{"request-1", "request-2"}, got)
}

// TestWithoutResolver: the handler behind the caller's own middleware.
func TestWithoutResolver(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), Check, nil)
	require.NoError(t, err)
	r := &profile.Resolver{Store: st, BaseURL: "http://172.22.10.2:8080"}
	h := r.Middleware(&Handler{})
	c := ok(t, h, "/ignition?mac="+smpcMAC)
	script, _, _ := c.file(t, InstallerPath)
	assert.Contains(t, script, "-d /dev/sdb ")

	rec := httptest.NewRecorder()
	(&Handler{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ignition?mac="+smpcMAC, nil))
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
}

// TestCacheIsTransparent: the same answers with and without the cache,
// across machines whose configs differ only in values, and across an
// inventory reload that changes a template.
func TestCacheIsTransparent(t *testing.T) {
	cached := demoHandler(t)
	uncached := demoHandler(t)
	uncached.CacheSize = -1
	small := demoHandler(t)
	small.CacheSize = 2
	for i := 0; i < 3; i++ {
		for _, q := range []string{"mac=" + smpcMAC, "mac=" + mpMAC, "mac=52:54:00:00:00:01", "mac=52:54:00:00:00:02", "mac=" + mpMAC + "&os=installed", "mac=" + smpcMAC + "&os=installed&hostname=other.lab"} {
			want := get(t, uncached, "/ignition?"+q)
			require.Equal(t, http.StatusOK, want.Code)
			for _, h := range []*Handler{cached, small} {
				got := get(t, h, "/ignition?"+q)
				assert.Equal(t, want.Body.String(), got.Body.String(), q)
			}
		}
	}
	assert.LessOrEqual(t, len(small.cache), 2)

	// A reload that changes a template: the next answer is the new one.
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, demo.FS()))
	h := &Handler{}
	st, err := profile.OpenFS(os.DirFS(dir), h.Check, nil)
	require.NoError(t, err)
	h.Resolver = &profile.Resolver{Store: st, BaseURL: "http://172.22.10.2:8080"}
	before := ok(t, h, "/ignition?mac="+smpcMAC+"&os=installed")
	assert.Equal(t, []string{"core", "debug"}, before.users())
	tmpl := dir + "/ignition/installed.yaml.tmpl"
	src, err := os.ReadFile(tmpl)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(tmpl, bytes.Replace(src, []byte("name: core"), []byte("name: ops"), 1), 0o644))
	require.NoError(t, st.Reload())
	after := ok(t, h, "/ignition?mac="+smpcMAC+"&os=installed")
	assert.Equal(t, []string{"ops", "debug"}, after.users())

	// A broken template on reload is rejected by Check; the old inventory
	// keeps serving.
	require.NoError(t, os.WriteFile(tmpl, append(src, []byte("{{.no_such_key}}\n")...), 0o644))
	require.Error(t, st.Reload())
	again := ok(t, h, "/ignition?mac="+smpcMAC+"&os=installed")
	assert.Equal(t, []string{"ops", "debug"}, again.users())
}

// TestHTTPServer serves through a real listener with concurrent clients.
func TestHTTPServer(t *testing.T) {
	h := demoHandler(t)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 8; j++ {
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/ignition?mac="+smpcMAC, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- assert.AnError
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
