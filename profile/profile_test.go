package profile_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/fixtures"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

func seedFS(t *testing.T) fs.FS {
	t.Helper()
	return fixtures.SeedLab()
}

func resolve(t *testing.T, s profile.Store, query string) *profile.Machine {
	t.Helper()
	attrs, err := profile.ParseQuery(query)
	require.NoError(t, err)
	r := &profile.Resolver{Store: s, BaseURL: "http://deploy.lab:8080/"}
	m, err := r.Resolve(context.Background(), attrs, query)
	require.NoError(t, err)
	return m
}

func TestSeedLabLoadsWithWarnings(t *testing.T) {
	inv, err := profile.LoadFS(seedFS(t))
	require.NoError(t, err)

	// Profiles are keyed by file name, as matchbox does.
	for _, id := range []string{"coreos-install", "coreos-install-mp", "coreos-install-smpc", "coreos-installed"} {
		_, ok := inv.Profile(id)
		assert.True(t, ok, id)
	}
	var ws []string
	for _, w := range inv.Warnings() {
		ws = append(ws, w.String())
	}
	joined := strings.Join(ws, "\n")
	assert.Contains(t, joined, `profiles/coreos-install-mp.json: id "coreos-install" differs from the file name; the profile is known as "coreos-install-mp"`)
	assert.Contains(t, joined, `profiles/coreos-install-smpc.json: id "coreos-install" differs from the file name`)
	assert.Contains(t, joined, `${mac:hexhyp}`)
	assert.Contains(t, joined, `$net_efinet0_dhcp_mac`)
	assert.Len(t, inv.Groups(), 5)
	assert.Len(t, inv.TemplateNames(), 3)
}

func TestSeedLabRendersRealValues(t *testing.T) {
	inv, err := profile.LoadFS(seedFS(t))
	require.NoError(t, err)
	tests := []struct {
		query, group, wantArg string
	}{
		{"mac=00:23:32:2f:40:3c", "coreos-install-mp", "coreos.config.url=http://deploy.lab:8080/ignition?mac=00:23:32:2f:40:3c"},
		{"mac=00-23-32-2F-40-3C", "coreos-install-mp", "coreos.config.url=http://deploy.lab:8080/ignition?mac=00:23:32:2f:40:3c"},
		{"mac=0030.48fb.e244", "coreos-install-smpc", "coreos.config.url=http://deploy.lab:8080/ignition?mac=00:30:48:fb:e2:44"},
		{"mac=52:54:00:12:34:56", "default", "coreos.config.url=http://deploy.lab:8080/ignition?uuid=&mac=52-54-00-12-34-56"},
		{"mac=52:54:00:12:34:56&uuid=4C4C4544-0043-3010-8058-B4C04F4C4E32", "default", "coreos.config.url=http://deploy.lab:8080/ignition?uuid=4c4c4544-0043-3010-8058-b4c04f4c4e32&mac=52-54-00-12-34-56"},
		{"mac=00:23:32:2f:40:3c&os=installed", "coreos-installed-mp", ""},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			m := resolve(t, inv, tc.query)
			assert.Equal(t, tc.group, m.Group.ID)
			b, err := m.RenderBoot()
			require.NoError(t, err)
			if tc.wantArg == "" {
				assert.Empty(t, b.Args)
				return
			}
			require.NotEmpty(t, b.Args)
			assert.Equal(t, tc.wantArg, b.Args[0])
			for _, a := range b.Args {
				assert.NotContains(t, a, "$", "a boot-loader variable was left for the boot loader")
			}
			assert.Equal(t, "/assets/coreos/1409.5.0/coreos_production_pxe.vmlinuz", b.Kernel)
		})
	}
}

func TestUUIDFromFacts(t *testing.T) {
	inv, err := profile.LoadFS(seedFS(t))
	require.NoError(t, err)
	mac := hwaddr.MustParse("52:54:00:12:34:56")
	r := &profile.Resolver{Store: inv, BaseURL: "http://deploy.lab:8080", Facts: profile.FactSourceFunc(func(_ context.Context, m hwaddr.MAC) (profile.Facts, bool) {
		if m != mac {
			return profile.Facts{}, false
		}
		return profile.Facts{UUID: "8e2d3d52-0000-4000-8000-000000000001", IP: netip.MustParseAddr("10.99.0.101"), Hostname: "node1"}, true
	})}
	attrs, err := profile.ParseQuery("mac=52:54:00:12:34:56")
	require.NoError(t, err)
	m, err := r.Resolve(context.Background(), attrs, "")
	require.NoError(t, err)
	b, err := m.RenderBoot()
	require.NoError(t, err)
	assert.Equal(t, "coreos.config.url=http://deploy.lab:8080/ignition?uuid=8e2d3d52-0000-4000-8000-000000000001&mac=52-54-00-12-34-56", b.Args[0])
	assert.Equal(t, "10.99.0.101", m.Data().IP)
	assert.Equal(t, "node1", m.Hostname)
}

func TestDemoInventory(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	inv := st.Inventory()
	assert.Empty(t, inv.Warnings())
	hosts := inv.Hosts()
	require.Len(t, hosts, 3)
	assert.Equal(t, "mp.lab", hosts[0].Hostname)
	assert.Equal(t, netip.MustParseAddr("172.22.10.50"), hosts[0].IP)
	assert.Equal(t, "smpc.lab", hosts[1].Hostname)
	assert.Equal(t, netip.MustParseAddr("172.22.10.54"), hosts[1].IP)
	assert.Equal(t, "arm.lab", hosts[2].Hostname)
	assert.Equal(t, netip.MustParseAddr("172.22.10.56"), hosts[2].IP)

	m := resolve(t, st, "mac=00:30:48:fb:e2:44")
	assert.Equal(t, "smpc", m.Group.ID)
	assert.Equal(t, "/dev/sdb", m.Metadata()["install_disk"])
	b, err := m.RenderBoot()
	require.NoError(t, err)
	assert.Contains(t, b.Args, "ignition.config.url=http://deploy.lab:8080/ignition?mac=00:30:48:fb:e2:44")
	assert.Equal(t, "smpc.lab", m.Hostname)

	m = resolve(t, st, "mac=00:23:32:2f:40:3c")
	assert.Equal(t, "/dev/sda", m.Metadata()["install_disk"])
	m = resolve(t, st, "mac=00:23:32:2f:40:3c&os=installed")
	assert.Equal(t, "installed", m.Profile.ID)
	m = resolve(t, st, "mac=02:00:00:00:00:99")
	assert.Equal(t, "default", m.Group.ID)
	m = resolve(t, st, "mac=02:00:00:00:00:99&os=installed")
	assert.Equal(t, "default-installed", m.Group.ID, "an unknown machine that installed is not reinstalled")

	// arm.lab is selected by its MAC and its architecture: its ARM64
	// installer, and after installation its installed config.
	m = resolve(t, st, "mac=d8:3a:dd:48:2b:10&arch=arm64")
	assert.Equal(t, "arm", m.Group.ID)
	b, err = m.RenderBoot()
	require.NoError(t, err)
	assert.Equal(t, "/assets/flatcar-arm64/current/flatcar_production_pxe.vmlinuz", b.Kernel)
	assert.Contains(t, b.Args, "ignition.config.url=http://deploy.lab:8080/ignition?mac=d8:3a:dd:48:2b:10&arch=arm64")
	m = resolve(t, st, "mac=d8:3a:dd:48:2b:10&arch=aarch64&os=installed")
	assert.Equal(t, "arm-installed", m.Group.ID)
	// x86 machines send arch too (GRUB's $grub_cpu): it changes nothing
	// for groups that do not select it.
	m = resolve(t, st, "mac=00:23:32:2f:40:3c&arch=x86_64")
	assert.Equal(t, "mp", m.Group.ID)
}

func profileJSON(id string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte(`{"id":"` + id + `","boot":{"kernel":"/k","args":["a={{.MAC}}"]}}`)}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files fstest.MapFS
		want  []string
	}{
		{"not a data dir", fstest.MapFS{"x": {}}, []string{"profiles/: missing directory"}},
		{"bad json", fstest.MapFS{
			"profiles/p.json": {Data: []byte("{\n \"id\": \"p\",\n \"boot\": {\"kernel\": 3}\n}")},
			"groups/g.json":   {Data: []byte(`{"profile":"p"}`)},
		}, []string{"profiles/p.json: line 3", "cannot unmarshal number"}},
		{"syntax", fstest.MapFS{
			"profiles/p.json": {Data: []byte("{\n\"id\": \"p\",,\n}")},
			"groups/.keep":    {},
		}, []string{"profiles/p.json: line 2, column"}},
		{"unknown profile", fstest.MapFS{
			"profiles/p.json": profileJSON("p"),
			"groups/g.json":   {Data: []byte(`{"profile":"nope"}`)},
		}, []string{`groups/g.json: group "g": unknown profile "nope"`}},
		{"bad mac", fstest.MapFS{
			"profiles/p.json": profileJSON("p"),
			"groups/g.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22"}}`)},
		}, []string{`groups/g.json: group "g": selector: mac: invalid MAC address "00:11:22": want 6 groups`}},
		{"empty selector value", fstest.MapFS{
			"profiles/p.json": profileJSON("p"),
			"groups/g.json":   {Data: []byte(`{"profile":"p","selector":{"mAC":""}}`)},
		}, []string{`groups/g.json: group "g": selector: mac: empty value`}},
		{"selector key twice", fstest.MapFS{
			"profiles/p.json": profileJSON("p"),
			"groups/g.json":   {Data: []byte(`{"profile":"p","selector":{"os":"a","OS":"b"}}`)},
		}, []string{`groups/g.json: group "g": selector: os given twice`}},
		{"missing kernel", fstest.MapFS{
			"profiles/p.json": {Data: []byte(`{"boot":{"args":["x"]}}`)},
			"groups/.keep":    {},
		}, []string{`profiles/p.json: profile "p": boot has initrd or args but no kernel`}},
		{"missing ignition file", fstest.MapFS{
			"profiles/p.json": {Data: []byte(`{"ignition_id":"nope.yaml"}`)},
			"groups/.keep":    {},
		}, []string{`ignition_id "nope.yaml": no such file under ignition/`}},
		{"bad template", fstest.MapFS{
			"profiles/p.json": {Data: []byte(`{"boot":{"kernel":"/k","args":["{{.MAC"]}}`)},
			"groups/.keep":    {},
		}, []string{`profiles/p.json: profile "p": template`}},
		{"missing metadata key", fstest.MapFS{
			"profiles/p.json": {Data: []byte(`{"boot":{"kernel":"/k","args":["disk={{.Metadata.disk}}"]}}`)},
			"groups/g.json":   {Data: []byte(`{"profile":"p","metadata":{"disc":"/dev/sda"}}`)},
		}, []string{`groups/g.json: group "g" with profile "p"`, `map has no entry for key "disk"`}},
		{"tie", fstest.MapFS{
			"profiles/p.json": profileJSON("p"),
			"groups/a.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:55"}}`)},
			"groups/b.json":   {Data: []byte(`{"profile":"p","selector":{"os":"installed"}}`)},
		}, []string{`groups "a" (groups/a.json) and "b" (groups/b.json) are equally specific`}},
		{"two defaults", fstest.MapFS{
			"profiles/p.json": profileJSON("p"),
			"groups/a.json":   {Data: []byte(`{"profile":"p"}`)},
			"groups/b.json":   {Data: []byte(`{"profile":"p"}`)},
		}, []string{`groups "a" (groups/a.json) and "b" (groups/b.json)`}},
		{"same mac spelled differently", fstest.MapFS{
			"profiles/p.json": profileJSON("p"),
			"groups/a.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:55"}}`)},
			"groups/b.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00-11-22-33-44-55"}}`)},
		}, []string{`groups "a" (groups/a.json) and "b" (groups/b.json)`}},
		{"trailing data", fstest.MapFS{
			"profiles/p.json": {Data: []byte(`{"boot":{"kernel":"/k"}} {}`)},
			"groups/.keep":    {},
		}, []string{`profiles/p.json: trailing data`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := profile.LoadFS(tc.files)
			require.Error(t, err)
			assert.Nil(t, inv, "never half-loaded")
			assert.ErrorIs(t, err, profile.ErrInvalid)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestDifferentKeysNoTie(t *testing.T) {
	inv, err := profile.LoadFS(fstest.MapFS{
		"profiles/p.json": profileJSON("p"),
		"groups/a.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:55"}}`)},
		"groups/b.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:66"}}`)},
		"groups/c.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:55","os":"installed"}}`)},
		"groups/d.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:55","unknownfield":"x"}, "colour": "red"}`)},
	})
	require.Error(t, err, "c and d tie on mac=00:11:22:33:44:55 os=installed unknownfield=x")
	inv, err = profile.LoadFS(fstest.MapFS{
		"profiles/p.json": profileJSON("p"),
		"groups/a.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:55"}}`)},
		"groups/b.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:66"}, "colour": "red"}`)},
		"groups/c.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:55","os":"installed"}}`)},
	})
	require.NoError(t, err)
	assert.Contains(t, inv.Warnings()[0].String(), `groups/b.json: ignored: unknown field "colour"`)
	_, _, err = inv.Match(map[string]string{"mac": "00:11:22:33:44:77"})
	assert.ErrorIs(t, err, profile.ErrNoMatch)
	g, _, err := inv.Match(map[string]string{"mac": "00:11:22:33:44:55", "os": "installed"})
	require.NoError(t, err)
	assert.Equal(t, "c", g.ID)
}

func TestNewInGo(t *testing.T) {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k", Args: []string{"h={{.Hostname}}", "net=${net0/mac:hexhyp}"}}}},
		Groups:   []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"MAC": "AA:BB:CC:DD:EE:FF"}, Metadata: map[string]any{"hostname": "n1.lab"}}},
	})
	require.NoError(t, err)
	m := resolve(t, inv, "mac=aa:bb:cc:dd:ee:ff")
	b, err := m.RenderBoot()
	require.NoError(t, err)
	assert.Equal(t, []string{"h=n1.lab", "net=aa-bb-cc-dd-ee-ff"}, b.Args)
}

func TestParseQuery(t *testing.T) {
	good := map[string]map[string]string{
		"mac=00-23-32-2F-40-3C":                       {"mac": "00:23:32:2f:40:3c"},
		"mac=0023.322f.403c&os=installed":             {"mac": "00:23:32:2f:40:3c", "os": "installed"},
		"uuid={4C4C4544-0043-3010-8058-B4C04F4C4E32}": {"uuid": "4c4c4544-0043-3010-8058-b4c04f4c4e32"},
		"uuid=&mac=":         {},
		"Hostname=Node1.LAB": {"hostname": "node1.lab"},
		"":                   {},
	}
	for q, want := range good {
		got, err := profile.ParseQuery(q)
		require.NoError(t, err, q)
		assert.Equal(t, want, got, q)
	}
	bad := []string{
		"mac=;reboot", "mac=zz", "mac=00:23:32:2f:40:3c&mac=00:23:32:2f:40:3c", "uuid=1234",
		"os=a%00b", "os=%27", "os=$(reboot)", "os=a;b", "bad%20key=x", "os=" + strings.Repeat("a", 300),
		strings.Repeat("a=b&", 600), "os=ü", "%zz", "k" + strings.Repeat("x", 70) + "=1",
		"hostname=@x", "hostname=a_b", "hostname=a:b",
	}
	for _, q := range bad {
		_, err := profile.ParseQuery(q)
		require.Error(t, err, q)
		assert.ErrorIs(t, err, profile.ErrBadRequest, q)
	}
}

func TestMiddleware(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	r := &profile.Resolver{Store: st, BaseURL: "http://x"}
	h := r.Middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m, ok := profile.FromContext(req.Context())
		require.True(t, ok)
		_, _ = w.Write([]byte(m.Group.ID))
	}))
	cases := map[string]int{
		"/grub?mac=00:23:32:2f:40:3c": 200,
		"/grub?mac=;reboot":           400,
		"/grub?mac=zz":                400,
		"/grub?os=%00":                400,
	}
	for url, code := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
		assert.Equal(t, code, rec.Code, url)
		assert.Equal(t, 1, strings.Count(rec.Body.String(), "\n")+boolInt(code == 200), url+": one line")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/grub?mac=00:23:32:2f:40:3c", nil))
	assert.Equal(t, 405, rec.Code)

	// Without a default group, an unknown machine is 404.
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k"}}},
		Groups:   []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"mac": "00:11:22:33:44:55"}}},
	})
	require.NoError(t, err)
	r.Store = inv
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/grub?mac=00:11:22:33:44:66", nil))
	assert.Equal(t, 404, rec.Code)
	assert.Contains(t, rec.Body.String(), "no matching group for mac=00:11:22:33:44:66")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestReloadKeepsOldOnError(t *testing.T) {
	fsys := fstest.MapFS{
		"profiles/p.json": profileJSON("p"),
		"groups/g.json":   {Data: []byte(`{"profile":"p"}`)},
	}
	checks := 0
	st, err := profile.OpenFS(fsys, func(*profile.Inventory) error { checks++; return nil }, nil)
	require.NoError(t, err)
	old := st.Inventory()
	fsys["groups/g.json"] = &fstest.MapFile{Data: []byte(`{"profile":"missing"}`)}
	require.Error(t, st.Reload())
	assert.Same(t, old, st.Inventory())

	st.Check = func(*profile.Inventory) error { return errors.New("template broken") }
	fsys["groups/g.json"] = &fstest.MapFile{Data: []byte(`{"profile":"p","metadata":{"v":2}}`)}
	require.ErrorContains(t, st.Reload(), "template broken")
	assert.Same(t, old, st.Inventory())

	st.Check = nil
	require.NoError(t, st.Reload())
	assert.NotSame(t, old, st.Inventory())
	assert.Equal(t, 1, checks)
}

func TestConcurrentReload(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				m := resolve(t, st, "mac=00:23:32:2f:40:3c")
				if _, err := m.RenderBoot(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		require.NoError(t, st.Reload())
	}
	wg.Wait()
}

func FuzzLoadFS(f *testing.F) {
	f.Add([]byte(`{"id":"p","boot":{"kernel":"/k","args":["a={{.MAC}}","${mac:hexhyp}"]}}`), []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:55"},"metadata":{"a":1}}`))
	f.Add([]byte(`{"boot":{"kernel":"{{.Metadata.x}}"}}`), []byte(`{"profile":"p"}`))
	f.Add([]byte(`{`), []byte(`[]`))
	f.Fuzz(func(t *testing.T, p, g []byte) {
		inv, err := profile.LoadFS(fstest.MapFS{"profiles/p.json": {Data: p}, "groups/g.json": {Data: g}})
		if err != nil {
			if inv != nil {
				t.Fatal("half-loaded inventory returned with an error")
			}
			return
		}
		for _, grp := range inv.Groups() {
			// A request for some machine: the group's selector, and a MAC
			// when the selector has none (a profile may use the MAC, and a
			// request naming no machine is refused at render time).
			attrs := map[string]string{profile.KeyMAC: profile.SampleMAC.String()}
			for k, v := range grp.Selector {
				attrs[k] = v
			}
			r := &profile.Resolver{Store: inv}
			m, err := r.Resolve(context.Background(), attrs, "")
			if err != nil {
				t.Fatalf("group %s does not match its own selector: %v", grp.ID, err)
			}
			if _, err := m.RenderBoot(); err != nil {
				t.Fatalf("loaded inventory fails to render: %v", err)
			}
		}
	})
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"mac=00:11:22:33:44:55", "mac=;reboot", "uuid=&os=installed", "%00", "a=b&a=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		attrs, err := profile.ParseQuery(q)
		if err != nil {
			if !errors.Is(err, profile.ErrBadRequest) {
				t.Fatalf("error does not wrap ErrBadRequest: %v", err)
			}
			return
		}
		for k, v := range attrs {
			if strings.ContainsAny(k+v, "'\"$;&|`\\{}\x00\n ") {
				t.Fatalf("unsafe attribute %q=%q accepted", k, v)
			}
		}
	})
}

func TestMoreSpecificGroupResolvesTie(t *testing.T) {
	// mac and os=installed alone are equally specific, but every request
	// that matches both also matches mac+os, which wins: no tie.
	inv, err := profile.LoadFS(fstest.MapFS{
		"profiles/p.json": profileJSON("p"),
		"groups/a.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:55"}}`)},
		"groups/b.json":   {Data: []byte(`{"profile":"p","selector":{"os":"installed"}}`)},
		"groups/c.json":   {Data: []byte(`{"profile":"p","selector":{"mac":"00:11:22:33:44:55","os":"installed"}}`)},
	})
	require.NoError(t, err)
	for attrs, want := range map[string]string{
		"mac=00:11:22:33:44:55":                  "a",
		"os=installed":                           "b",
		"mac=00:11:22:33:44:66&os=installed":     "b",
		"mac=00:11:22:33:44:55&os=installed":     "c",
		"mac=00:11:22:33:44:55&os=installed&x=y": "c",
	} {
		a, err := profile.ParseQuery(attrs)
		require.NoError(t, err)
		g, _, err := inv.Match(a)
		require.NoError(t, err, attrs)
		assert.Equal(t, want, g.ID, attrs)
	}
}

// TestFactSourceGetsRequestContext: the Middleware passes each request's
// context to the FactSource, so a networked source sees its deadline and
// cancellation (and values).
func TestFactSourceGetsRequestContext(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	type key struct{}
	var got []any
	var mu sync.Mutex
	r := &profile.Resolver{Store: st, BaseURL: "http://x", Facts: profile.FactSourceFunc(func(ctx context.Context, mac hwaddr.MAC) (profile.Facts, bool) {
		mu.Lock()
		got = append(got, ctx.Value(key{}))
		mu.Unlock()
		if ctx.Err() != nil {
			return profile.Facts{}, false // a networked source gives up
		}
		return profile.Facts{Hostname: "from-facts"}, true
	})}
	var hostname string
	h := r.Middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m, _ := profile.FromContext(req.Context())
		hostname = m.Hostname
	}))
	req := httptest.NewRequest("GET", "/grub?mac=52:54:00:00:00:07", nil)
	h.ServeHTTP(httptest.NewRecorder(), req.WithContext(context.WithValue(req.Context(), key{}, "request-1")))
	assert.Equal(t, []any{"request-1"}, got)
	assert.Equal(t, "from-facts", hostname)

	// A request whose context has ended gets no facts, not an error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m, err := r.Resolve(ctx, map[string]string{"mac": "52:54:00:00:00:07"}, "")
	require.NoError(t, err)
	assert.Empty(t, m.Hostname)
}

// TestInventoryHost: the per-request lookups a DHCP reservation source
// makes on the current inventory agree with Hosts.
func TestInventoryHost(t *testing.T) {
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	inv := st.Inventory()
	hosts := inv.Hosts()
	require.NotEmpty(t, hosts)
	for _, want := range hosts {
		got, ok := inv.Host(want.MAC)
		require.True(t, ok, want.MAC.String())
		assert.Equal(t, want, got)
		got, ok = inv.HostByIP(want.IP)
		require.True(t, ok, want.IP.String())
		assert.Equal(t, want, got)
		got, ok = inv.HostByIP(netip.AddrFrom16(want.IP.As16()))
		assert.True(t, ok, "IPv4-mapped %s", want.IP)
		assert.Equal(t, want, got)
	}
	_, ok := inv.Host(hwaddr.MustParse("52:54:00:00:00:07"))
	assert.False(t, ok, "a MAC no group names")
	_, ok = inv.HostByIP(netip.MustParseAddr("172.22.10.99"))
	assert.False(t, ok)
	_, ok = inv.HostByIP(netip.Addr{})
	assert.False(t, ok)

	// A group with only a hostname is a host without address; two hosts
	// naming one address: the first by MAC is the one HostByIP returns.
	inv, err = profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k"}}},
		Groups: []profile.Group{
			{ID: "a", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:02"}, Metadata: map[string]any{"ip": "10.0.0.5"}},
			{ID: "b", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:01"}, Metadata: map[string]any{"ip": "10.0.0.5"}},
			{ID: "c", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:03"}, Metadata: map[string]any{"hostname": "c.lab"}},
		},
	})
	require.NoError(t, err)
	h, ok := inv.HostByIP(netip.MustParseAddr("10.0.0.5"))
	require.True(t, ok)
	assert.Equal(t, "b", h.Group)
	h, ok = inv.Host(hwaddr.MustParse("52:54:00:00:00:03"))
	require.True(t, ok)
	assert.Equal(t, "c.lab", h.Hostname)
	assert.False(t, h.IP.IsValid())

	// An empty inventory (a store before its first load) answers nothing.
	empty, err := profile.New(profile.Data{})
	require.NoError(t, err)
	_, ok = empty.Host(hwaddr.MustParse("52:54:00:00:00:01"))
	assert.False(t, ok)
}
