package ignition

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
)

// matchboxDocInventory is the example of matchbox's docs/api-http.md and
// docs/matchbox.md: a group selecting one MAC with metadata, nested
// metadata, numbers, booleans and a list; a profile with a generic
// template using metadata, selector and request variables.
func matchboxDocInventory(t testing.TB) *profile.Inventory {
	t.Helper()
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{
			{ID: "etcd", Boot: profile.Boot{Kernel: "/k"}, GenericID: "setup.cfg.tmpl"},
			{ID: "plain", Boot: profile.Boot{Kernel: "/k"}},
		},
		Groups: []profile.Group{
			{ID: "node1", Profile: "etcd", Selector: map[string]string{"mac": "52:54:00:a1:9c:ae"}, Metadata: map[string]any{
				"meta": "data", "etcd_name": "node1", "fleet_metadata": "role=etcd,name=node1",
				"some":  map[string]any{"nested": map[string]any{"data": "some-value"}},
				"count": float64(3), "gate": true, "list": []any{"a"}, "nothing": nil,
				"ssh_key": "ssh-ed25519 AAAA it's me", "request": "overwritten",
			}},
			{ID: "other", Profile: "plain"},
		},
		Generic: map[string][]byte{"setup.cfg.tmpl": []byte(
			"# Untyped generic config file\nmac={{.mac}}\netcd_name={{.etcd_name}}\nfleet={{.fleet_metadata}}\n" +
				"query.mac={{.request.query.mac}}\nquery.foo={{.request.query.foo}}\nraw={{.request.raw_query}}\nhost={{.Hostname}}\n")},
	})
	require.NoError(t, err)
	return inv
}

func getPath(t testing.TB, h http.Handler, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

// TestMetadataMatchboxExample: /metadata answers matchbox's documented
// example, line for line (sorted), with values a shell would misread
// single-quoted.
func TestMetadataMatchboxExample(t *testing.T) {
	h := &MetadataHandler{Resolver: &profile.Resolver{Store: matchboxDocInventory(t)}}
	rec := getPath(t, h, "/metadata?mac=52-54-00-a1-9c-ae&foo=bar&count=3&gate=true&uuid=")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
	assert.Equal(t, `COUNT=3
ETCD_NAME=node1
FLEET_METADATA=role=etcd,name=node1
GATE=true
MAC=52:54:00:a1:9c:ae
META=data
REQUEST_QUERY_COUNT=3
REQUEST_QUERY_FOO=bar
REQUEST_QUERY_GATE=true
REQUEST_QUERY_MAC=52:54:00:a1:9c:ae
REQUEST_QUERY_UUID=
REQUEST_RAW_QUERY='mac=52-54-00-a1-9c-ae&foo=bar&count=3&gate=true&uuid='
SOME_NESTED_DATA=some-value
SSH_KEY='ssh-ed25519 AAAA it'\''s me'
`, rec.Body.String())

	assert.Equal(t, http.StatusBadRequest, getPath(t, h, "/metadata?mac=nope").Code)
	rec = getPath(t, h, "/metadata?os=x")
	assert.Equal(t, http.StatusOK, rec.Code, "the default group")
	assert.Equal(t, "REQUEST_QUERY_OS=x\nREQUEST_RAW_QUERY=os=x\n", rec.Body.String())
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/metadata?os=x", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
}

// TestMetadataShellReadsBack: a shell that sources the file (dash, and
// busybox sh when installed) gets every value exactly, whatever it holds,
// and runs nothing.
func TestMetadataShellReadsBack(t *testing.T) {
	values := map[string]any{
		"a": "x; touch PWNED", "b": "$(touch PWNED)", "c": "`touch PWNED`", "d": "it's", "e": "line1\nline2",
		"f": "a b  c", "g": "&", "h": "\"quoted\"", "i": "~", "j": "*", "k": "x\\", "l": "", "m": "'",
		"n": "#c", "o": "a|b", "p": "${HOME}", "q": "é", "r": "\t",
	}
	data := map[string]any{"v": values, "bad key": "x", "bad\nKEY=1": "y"}
	env, skipped := AppendEnv(nil, data)
	assert.Equal(t, []string{"bad\nKEY=1", "bad key"}, skipped)
	dir := t.TempDir()
	file := filepath.Join(dir, "env")
	require.NoError(t, os.WriteFile(file, env, 0o644))
	for _, sh := range []string{"/bin/sh", "/bin/busybox"} {
		if _, err := os.Stat(sh); err != nil {
			continue
		}
		for k, v := range values {
			args := []string{"-c", `. "$1" && printf %s "$V_` + strings.ToUpper(k) + `"`, "sh", file}
			if strings.HasSuffix(sh, "busybox") {
				args = append([]string{"sh"}, args...)
			}
			cmd := exec.Command(sh, args...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s: %s", sh, out)
			assert.Equal(t, v, string(out), "%s: %s", sh, k)
		}
		_, err := os.Stat(filepath.Join(dir, "PWNED"))
		assert.True(t, os.IsNotExist(err), "%s ran a command", sh)
	}
}

// FuzzMetadataEnv: whatever a value holds, the env file has one line
// group per key, which a model of the shell's single quotes reads back
// as the value.
func FuzzMetadataEnv(f *testing.F) {
	for _, s := range []string{"plain", "it's", "a\nB=1", "'", "''\n'", "$x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		env, skipped := AppendEnv(nil, map[string]any{"a": v, "request": map[string]any{"query": map[string]string{"x": v}}})
		if len(skipped) != 0 {
			t.Fatal(skipped)
		}
		got := readEnvModel(t, string(env))
		want := map[string]string{"A": v, "REQUEST_QUERY_X": v}
		if !assert.ObjectsAreEqual(want, got) {
			t.Fatalf("%q: %q read back as %q", v, env, got)
		}
	})
}

// readEnvModel reads KEY=value lines where a value is plain or made of
// single-quoted parts and \' (POSIX sh's rules for these).
func readEnvModel(t testing.TB, s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			t.Fatalf("no '=' in %q", s)
		}
		key := s[:eq]
		s = s[eq+1:]
		var v strings.Builder
		for s != "" && s[0] != '\n' {
			switch {
			case s[0] == '\'':
				end := strings.IndexByte(s[1:], '\'')
				if end < 0 {
					t.Fatalf("unterminated quote in %q", s)
				}
				v.WriteString(s[1 : 1+end])
				s = s[end+2:]
			case strings.HasPrefix(s, `\'`):
				v.WriteByte('\'')
				s = s[2:]
			default:
				if !onlyChars(s[:1], "._:/@=+,%-") {
					t.Fatalf("unquoted %q", s[0])
				}
				v.WriteByte(s[0])
				s = s[1:]
			}
		}
		s = strings.TrimPrefix(s, "\n")
		if _, dup := out[key]; dup {
			t.Fatalf("key %s twice", key)
		}
		out[key] = v.String()
	}
	return out
}

// TestGenericMatchboxExample: /generic renders the profile's generic
// template with matchbox's variables (selector, metadata, request query
// and raw query) and metalboot's.
func TestGenericMatchboxExample(t *testing.T) {
	inv := matchboxDocInventory(t)
	require.NoError(t, Check(inv))
	var served []string
	h := &GenericHandler{Resolver: &profile.Resolver{Store: inv},
		OnServe: func(r *http.Request, m *profile.Machine) { served = append(served, m.MAC.String()) }}
	rec := getPath(t, h, "/generic?mac=52-54-00-89-d8-10&foo=some-param&bar=b")
	assert.Equal(t, http.StatusNotFound, rec.Code, "node1 selects another MAC; the default group's profile has no generic_id: %s", rec.Body.String())
	rec = getPath(t, h, "/generic?mac=52-54-00-a1-9c-ae&foo=some-param&bar=b&hostname=n1")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "# Untyped generic config file\nmac=52:54:00:a1:9c:ae\netcd_name=node1\nfleet=role=etcd,name=node1\n"+
		"query.mac=52:54:00:a1:9c:ae\nquery.foo=some-param\nraw=mac=52-54-00-a1-9c-ae&foo=some-param&bar=b&hostname=n1\nhost=n1\n", rec.Body.String())
	assert.Equal(t, []string{"52:54:00:a1:9c:ae"}, served)

	for target, code := range map[string]int{
		"/generic?mac=52-54-00-a1-9c-ae":                 400, // the template reads request.query.foo
		"/generic?mac=52-54-00-a1-9c-ae&foo=a,b":         400, // ',' fails the strict check: the format is unknown
		"/generic?mac=52-54-00-a1-9c-ae&foo=x&os=a%20b":  400,
		"/generic?mac=02-00-00-00-00-01&foo=x":           404, // the default group's profile has no generic_id
		"/generic?mac=52-54-00-a1-9c-ae&foo=x&mac=52-54": 400,
	} {
		rec := getPath(t, h, target)
		assert.Equal(t, code, rec.Code, "%s: %s", target, rec.Body.String())
	}
}

// TestGenericCheck: a broken generic template, or one a group's sample
// machine cannot render, fails the load with its file; a missing file
// already fails profile.New.
func TestGenericCheck(t *testing.T) {
	for src, want := range map[string]string{
		"{{.nope}}":  "generic/g.tmpl",
		"{{if}}":     "generic/g.tmpl",
		"{{.mac}} x": "",
	} {
		inv, err := profile.New(profile.Data{
			Profiles: []profile.Profile{{ID: "p", GenericID: "g.tmpl"}},
			Groups:   []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"mac": "52:54:00:00:00:01"}}},
			Generic:  map[string][]byte{"g.tmpl": []byte(src)},
		})
		require.NoError(t, err)
		err = Check(inv)
		if want == "" {
			assert.NoError(t, err, src)
			continue
		}
		require.Error(t, err, src)
		assert.Contains(t, err.Error(), want, src)
	}
}

// TestGuardedGenericAndMetadata: with a Guard, /generic and /metadata go
// only where /ignition goes (metadata may hold secrets).
func TestGuardedGenericAndMetadata(t *testing.T) {
	inv := matchboxDocInventory(t)
	guard := GuardFunc(func(_ context.Context, mac hwaddr.MAC, remote netip.Addr) bool {
		return remote == netip.MustParseAddr("10.0.0.5")
	})
	for _, h := range []http.Handler{
		&GenericHandler{Resolver: &profile.Resolver{Store: inv}, Guard: guard},
		&MetadataHandler{Resolver: &profile.Resolver{Store: inv}, Guard: guard},
	} {
		req := httptest.NewRequest(http.MethodGet, "/x?mac=52-54-00-a1-9c-ae&foo=x", nil)
		req.RemoteAddr = "10.0.0.6:1234"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusForbidden, rec.Code)
		req.RemoteAddr = "10.0.0.5:1234"
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	}
}

// TestIgnitionRequestFields: Ignition templates get matchbox's request
// fields too.
func TestIgnitionRequestFields(t *testing.T) {
	inv := matchboxDocInventory(t)
	attrs, err := profile.ParseQuery("mac=52-54-00-a1-9c-ae&foo=bar")
	require.NoError(t, err)
	m, err := (&profile.Resolver{Store: inv}).Resolve(context.Background(), attrs, "mac=52-54-00-a1-9c-ae&foo=bar")
	require.NoError(t, err)
	d := Data(m)
	req := d["request"].(map[string]any)
	assert.Equal(t, "mac=52-54-00-a1-9c-ae&foo=bar", req["raw_query"])
	assert.Equal(t, "bar", req["query"].(map[string]string)["foo"])
	assert.Equal(t, "52:54:00:a1:9c:ae", req["query"].(map[string]string)["mac"])
	md := MatchboxData(m)
	for k, v := range md {
		if k != "request" {
			assert.Equal(t, v, d[k], k)
		}
	}
	assert.Equal(t, req["raw_query"], md["request"].(map[string]any)["raw_query"])
}
