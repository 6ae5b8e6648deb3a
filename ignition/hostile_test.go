package ignition

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vincent-petithory/dataurl"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

// issue14Hostnames are the values of issue #14: YAML that closes the
// demo's quoted string and adds a file, and a second kernel parameter.
var issue14Hostnames = []string{
	"x\"\n    - path: /etc/sudoers.d/evil\n      mode: 0440\n      contents:\n        inline: \"ALL ALL=(ALL) NOPASSWD: ALL",
	"x\"\n  - path: /etc/sudoers.d/evil\n    contents:\n      inline: \"ALL ALL=(ALL) NOPASSWD: ALL\"\n#",
	"x init=/bin/sh",
}

// hostileValues are more values that break YAML or JSON when pasted in.
var hostileValues = []string{
	`x", "path": "/etc/evil`, "a\nb: c", "- x", "{{.MAC}}", "Xmb0zeY", "Xmb0z", `\`, `\"`, "'", "&a *a", "!!binary x",
	"#", "a: b", "[a, b]", "null", "é", "\x00", "\t", "%2F", "data:,x", "}", `"]}]}`, strings.Repeat("y", 300),
	`x"}}, {"path": "/etc/evil", "contents": {"source": "data:,y`, "\xff\xfe",
}

func paths(c config) []string {
	var out []string
	for _, f := range c.Storage.Files {
		out = append(out, f.Path)
	}
	return out
}

func units(c config) []string {
	var out []string
	for _, u := range c.Systemd.Units {
		out = append(out, u.Name)
	}
	return out
}

// factsHandler serves the demo inventory with a DHCP lease that gives
// every machine the hostname *hostname.
func factsHandler(t *testing.T, hostname *string) *Handler {
	t.Helper()
	h := &Handler{}
	st, err := profile.OpenFS(demo.FS(), h.Check, nil)
	require.NoError(t, err)
	h.Resolver = &profile.Resolver{Store: st, BaseURL: "http://172.22.10.2:8080",
		Facts: profile.FactSourceFunc(func(context.Context, hwaddr.MAC) (profile.Facts, bool) {
			return profile.Facts{Hostname: *hostname}, true
		})}
	return h
}

// TestIssue14IgnitionThroughFacts is issue #14's attack as sent: a DHCP
// hostname with a quote, a newline and YAML, on the demo inventory, whose
// installed template puts the hostname inside a YAML string. The config
// served has exactly the files, units and users of a benign machine.
func TestIssue14IgnitionThroughFacts(t *testing.T) {
	hostname := "n1.lab"
	h := factsHandler(t, &hostname)
	const q = "/ignition?mac=52:54:00:00:00:01&os=installed"
	benign := ok(t, h, q)
	require.Equal(t, []string{"/etc/hostname"}, paths(benign))
	host, _, _ := benign.file(t, "/etc/hostname")
	require.Equal(t, "n1.lab", host)
	for _, hostname = range issue14Hostnames {
		c := ok(t, h, q)
		assert.Subset(t, paths(benign), paths(c), "%q", hostname)
		assert.NotContains(t, paths(c), "/etc/sudoers.d/evil")
		assert.Equal(t, benign.users(), c.users())
		assert.Equal(t, units(benign), units(c))
	}
}

// TestIssue14IgnitionEncoded: the same values reaching the renderer
// unvalidated (a library user's FactSource, a machine built in Go): they
// are encoded, not pasted: the config has the benign structure and
// /etc/hostname holds the value byte for byte.
func TestIssue14IgnitionEncoded(t *testing.T) {
	h := demoHandler(t)
	m := resolveMachine(t, h, "mac=52:54:00:00:00:01&os=installed")
	m.Hostname = "n1.lab"
	out, err := h.Render(m)
	require.NoError(t, err)
	benign := decodeConfig(t, out.JSON)
	for _, v := range append(slices.Clone(issue14Hostnames), hostileValues...) {
		m.Hostname = v
		out, err := h.Render(m)
		require.NoError(t, err, "%q", v)
		c := decodeConfig(t, out.JSON)
		assert.Equal(t, paths(benign), paths(c), "%q", v)
		assert.Equal(t, benign.users(), c.users(), "%q", v)
		got, _, found := c.file(t, "/etc/hostname")
		require.True(t, found)
		assert.Equal(t, v, got, "the value, byte for byte")
		_, _, err = Validate(out.JSON)
		require.NoError(t, err)
	}
	ignitionValidate(t, out.JSON)
}

func resolveMachine(t testing.TB, h *Handler, query string) *profile.Machine {
	t.Helper()
	attrs, err := profile.ParseQuery(query)
	require.NoError(t, err)
	m, err := h.Resolver.Resolve(context.Background(), attrs, query)
	require.NoError(t, err)
	return m
}

// labelStore is an inventory whose template puts request values where
// YAML gives commas, colons and dashes meaning: a flow sequence, a plain
// scalar, a unit description, a file name.
func labelStore(t testing.TB, tmpl string) profile.Store {
	t.Helper()
	inv, err := profile.New(profile.Data{
		Profiles:  []profile.Profile{{ID: "p", IgnitionID: "t.yaml.tmpl"}},
		Groups:    []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"grp": "wheel"}}},
		Templates: map[string][]byte{"t.yaml.tmpl": []byte(tmpl)},
	})
	require.NoError(t, err)
	return inv
}

const labelTemplate = `variant: fcos
version: 1.5.0
passwd:
  users:
    - name: ops
      groups: [{{.request.query.grp}}]
    - name: {{.request.query.user}}
storage:
  files:
    - path: /etc/motd.d/{{.request.query.user}}
      contents:
        inline: {{.request.query.note}}
systemd:
  units:
    - name: note.service
      contents: |
        [Unit]
        Description=note {{.request.query.note}}
`

// TestQueryValuesCannotAddStructure: what ParseQuery lets through (',',
// ':', '-', '@', '=') still cannot change the config: a comma in a flow
// sequence used to add a supplementary group.
func TestQueryValuesCannotAddStructure(t *testing.T) {
	st := labelStore(t, labelTemplate)
	require.NoError(t, Check(st.Inventory()))
	h := &Handler{Resolver: &profile.Resolver{Store: st}}
	c := ok(t, h, "/ignition?grp=wheel&user=alice&note=hi&mac=52:54:00:00:00:01")
	require.Len(t, c.Passwd.Users, 2)
	assert.Equal(t, []string{"wheel"}, c.Passwd.Users[0].Groups)

	for _, v := range []string{"wheel,sudo", "sudo:x", "-x", "@x", "a=b", "x,y,z", "x:y"} {
		c := ok(t, h, "/ignition?grp=wheel&user=alice&note="+v+"&mac=52:54:00:00:00:01")
		note, _, found := c.file(t, "/etc/motd.d/alice")
		require.True(t, found, v)
		assert.Equal(t, v, note)
		unit, _, _ := c.unit("note.service")
		assert.Contains(t, unit, "Description=note "+v+"\n")
	}
	// The group list through the query: the group must match the selector,
	// so build the machine as the resolver would for another value.
	m := resolveMachine(t, h, "grp=wheel&user=alice&note=hi&mac=52:54:00:00:00:01")
	m.Attrs["grp"] = "wheel,sudo"
	out, err := h.Render(m)
	require.NoError(t, err)
	c = decodeConfig(t, out.JSON)
	assert.Equal(t, []string{"wheel,sudo"}, c.Passwd.Users[0].Groups, "one group, named as sent")

	// A file name from the request is one name, never a path.
	rec := get(t, h, "/ignition?grp=wheel&user=../../etc/sudoers.d/x&note=hi&mac=52:54:00:00:00:01")
	assert.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), "request.query.user")
}

// TestJSONTemplateValuesEncoded: in an Ignition JSON template a value
// inside a JSON string cannot close it, and a data URL's contents get the
// value byte for byte.
func TestJSONTemplateValuesEncoded(t *testing.T) {
	src := `{"ignition": {"version": "3.3.0"},
 "storage": {"files": [{"path": "/etc/hostname", "contents": {"source": "data:,{{.Hostname}}"}},
                       {"path": "/etc/issue", "contents": {"source": "data:;base64,aGVsbG8K"}}]},
 "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAAA {{.Hostname}}"]}]}}`
	tp, err := Compile("j.ign", []byte(src))
	require.NoError(t, err)
	for _, v := range append([]string{"n1.lab", `x"}]}, "storage": {"files": [{"path": "/etc/evil"}]}, "x": {"y": "`}, hostileValues...) {
		out, err := tp.Render(map[string]any{"Hostname": v})
		if strings.ContainsAny(v, "\n\t\x00") || !utf8Valid(v) {
			require.Error(t, err, "%q in an SSH key line", v)
			assert.ErrorIs(t, err, profile.ErrBadValue)
			continue
		}
		require.NoError(t, err, "%q", v)
		c := decodeConfig(t, out.JSON)
		assert.Equal(t, []string{"/etc/hostname", "/etc/issue"}, paths(c), "%q", v)
		got, _, _ := c.file(t, "/etc/hostname")
		assert.Equal(t, v, got)
		issue, _, _ := c.file(t, "/etc/issue")
		assert.Equal(t, "hello\n", issue, "data URLs without values untouched")
		require.Len(t, c.Passwd.Users, 1)
		assert.Equal(t, []string{"ssh-ed25519 AAAA " + v}, c.Passwd.Users[0].Keys)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// TestLogicUseIsStrict: a template that compares a value cannot use a
// placeholder there; it gets the real value after strict validation, Check
// says so, and values printed whole stay encoded.
func TestLogicUseIsStrict(t *testing.T) {
	tmpl := "variant: flatcar\nversion: 1.0.0\n{{if eq .request.query.os \"installed\"}}\nstorage:\n  files:\n    - path: /etc/installed\n      contents:\n        inline: \"{{.Hostname}}\"\n{{end}}\n"
	inv, err := profile.New(profile.Data{
		Profiles:  []profile.Profile{{ID: "p", IgnitionID: "t.yaml.tmpl"}},
		Groups:    []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"os": "installed"}}},
		Templates: map[string][]byte{"t.yaml.tmpl": []byte(tmpl)},
	})
	require.NoError(t, err)
	_, warns, err := check(inv)
	require.NoError(t, err)
	require.NotEmpty(t, warns)
	assert.Contains(t, strings.Join(warns, "\n"), "{{.request}} in logic")
	var logs bytes.Buffer
	h := &Handler{Resolver: &profile.Resolver{Store: inv}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	require.NoError(t, h.Check(inv))
	assert.Contains(t, logs.String(), "level=WARN")

	m := resolveMachine(t, h, "os=installed&mac=52:54:00:00:00:01")
	m.Hostname = issue14Hostnames[0]
	out, err := h.Render(m)
	require.NoError(t, err)
	c := decodeConfig(t, out.JSON)
	assert.Equal(t, []string{"/etc/installed"}, paths(c), "the hostname is not in logic: still encoded")

	m.Attrs["x"] = "a,b" // a label the strict rule refuses: the query is used in logic
	_, err = h.Render(m)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrRequestValues)
	assert.ErrorIs(t, err, profile.ErrBadValue)
	code, msg := h.status(err)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, msg, "request.query.x")
}

// TestCacheServesNewMachines: the text translated is the same for every
// machine of a group (values are placeholders), so a new machine is a
// cache hit and Butane runs once per group, not once per machine.
func TestCacheServesNewMachines(t *testing.T) {
	hostname := "a.lab"
	h := factsHandler(t, &hostname)
	for i, n := range []string{"a.lab", "b.lab", "c.lab"} {
		hostname = n
		c := ok(t, h, "/ignition?mac=52:54:00:00:00:0"+string(rune('1'+i))+"&os=installed")
		host, _, _ := c.file(t, "/etc/hostname")
		assert.Equal(t, n, host)
	}
	ok(t, h, "/ignition?mac=52:54:00:00:00:04")
	ok(t, h, "/ignition?mac=52:54:00:00:00:05")
	assert.Len(t, h.cache, 2, "one translation for the installed group, one for the installer")
}

// fuzzButane puts a value everywhere a Butane template can: quoted and
// plain scalars, block scalars, flow sequences, a file name, a unit
// description, an SSH key.
const fuzzButane = `variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/hostname
      contents:
        inline: "{{.Hostname}}"
    - path: /etc/plain
      contents:
        inline: {{.Labels.note}}
    - path: /etc/block
      contents:
        inline: |
          host={{.Hostname}} q={{.request.query.q}} raw={{.request.raw_query}}
    - path: /etc/by-name/{{.Labels.note}}
      contents:
        source: "data:,{{.MAC}}"
systemd:
  units:
    - name: n.service
      contents: |
        [Unit]
        Description={{.Hostname}}
passwd:
  users:
    - name: core
      groups: [{{.Labels.note}}, docker]
      ssh_authorized_keys:
        - "ssh-ed25519 AAAA {{.request.query.q}}"
`

// fuzzJSON is the same for an Ignition JSON template.
const fuzzJSON = `{"ignition": {"version": "3.3.0"},
 "storage": {"files": [
   {"path": "/etc/hostname", "contents": {"source": "data:,{{.Hostname}}"}},
   {"path": "/etc/by-name/{{.Labels.note}}", "contents": {"source": "data:,{{.request.raw_query}}"}}]},
 "systemd": {"units": [{"name": "n.service", "contents": "[Unit]\nDescription={{.Hostname}}\n"}]},
 "passwd": {"users": [{"name": "core", "groups": ["{{.Labels.note}}"], "sshAuthorizedKeys": ["ssh-ed25519 AAAA {{.request.query.q}}"]}]}}`

func fuzzData(v string) map[string]any {
	return map[string]any{
		"MAC":      "00:30:48:fb:e2:44",
		"Hostname": v,
		"Labels":   map[string]string{"note": v},
		"request":  map[string]any{"query": map[string]string{"q": v}, "raw_query": v},
	}
}

// fuzzHostile renders src with v in every network field and checks that
// the structure is the benign one: the same file paths (the file named by
// the value excepted, which must be exactly that name), units and users,
// each value in place; or that rendering failed because of the value.
func fuzzHostile(f *testing.F, name, src string) {
	for _, v := range append(slices.Clone(issue14Hostnames), hostileValues...) {
		f.Add(v)
	}
	tp, err := Compile(name, []byte(src))
	if err != nil {
		f.Fatal(err)
	}
	out, err := tp.Render(fuzzData("benign"))
	if err != nil {
		f.Fatal(err)
	}
	benign := decodeConfig(f, out.JSON)
	f.Fuzz(func(t *testing.T, v string) {
		if v == "" {
			return // an empty value is no value: {{if}} semantics, not an injection
		}
		out, err := tp.Render(fuzzData(v))
		if err != nil {
			// With placeholders the translated text does not depend on the
			// value: the only failure a value may cause is its own.
			if !errors.Is(err, profile.ErrBadValue) {
				t.Fatalf("%q: %v", v, err)
			}
			return
		}
		c := decodeConfig(t, out.JSON)
		want := strings.ReplaceAll(strings.Join(paths(benign), "\n"), "benign", v)
		if got := strings.Join(paths(c), "\n"); got != want {
			t.Fatalf("%q: files\n%s\nwant\n%s", v, got, want)
		}
		if !slices.Equal(units(c), units(benign)) || !slices.Equal(c.users(), benign.users()) {
			t.Fatalf("%q: units %q users %q", v, units(c), c.users())
		}
		if g := c.Passwd.Users[0].Groups; len(g) != len(benign.Passwd.Users[0].Groups) || g[0] != v {
			t.Fatalf("%q: groups %q", v, g)
		}
		if host, _, _ := c.file(t, "/etc/hostname"); host != v {
			t.Fatalf("%q: /etc/hostname is %q", v, host)
		}
	})
}

// FuzzRenderHostileButane: hostile values in every network field of a
// Butane template never change the config's structure.
func FuzzRenderHostileButane(f *testing.F) { fuzzHostile(f, "f.yaml.tmpl", fuzzButane) }

// FuzzRenderHostileIgnitionJSON: the same for an Ignition JSON template.
func FuzzRenderHostileIgnitionJSON(f *testing.F) { fuzzHostile(f, "f.ign", fuzzJSON) }

// TestMergedConfigValuesEncoded: a config to merge, inlined in the
// template (Butane turns it into a data URL), is Ignition JSON too: a
// value in one of its strings cannot add to its structure.
func TestMergedConfigValuesEncoded(t *testing.T) {
	src := "variant: flatcar\nversion: 1.0.0\nignition:\n  config:\n    merge:\n      - inline: |\n" +
		`          {"ignition": {"version": "3.3.0"}, "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["{{.Hostname}}"]}]}}` + "\n"
	tp, err := Compile("m.yaml.tmpl", []byte(src))
	require.NoError(t, err)
	v := `x"]}]}, "storage": {"files": [{"path": "/etc/evil"}]}, "y": {"z": ["`
	out, err := tp.Render(map[string]any{"Hostname": v})
	require.NoError(t, err)
	var outer struct {
		Ignition struct {
			Config struct {
				Merge []struct {
					Source string `json:"source"`
				} `json:"merge"`
			} `json:"config"`
		} `json:"ignition"`
	}
	require.NoError(t, json.Unmarshal(out.JSON, &outer))
	require.Len(t, outer.Ignition.Config.Merge, 1)
	du, err := dataurl.DecodeString(outer.Ignition.Config.Merge[0].Source)
	require.NoError(t, err)
	child := decodeConfig(t, du.Data)
	assert.Empty(t, child.Storage.Files, "no file added to the merged config:\n%s", du.Data)
	require.Len(t, child.Passwd.Users, 1)
	assert.Equal(t, []string{v}, child.Passwd.Users[0].Keys)
	_, _, err = Validate(du.Data)
	require.NoError(t, err)
}

// TestSameBytesAsPerRequestTranslation: for values YAML can carry, the
// config built from placeholders is byte for byte the one Butane gives
// when it translates the text with the values in (same data URL
// encoding, same JSON).
func TestSameBytesAsPerRequestTranslation(t *testing.T) {
	h := demoHandler(t)
	for _, q := range []string{"mac=00:30:48:fb:e2:44", "mac=00:23:32:2f:40:3c&os=installed", "mac=52:54:00:00:00:01&os=installed"} {
		m := resolveMachine(t, h, q)
		for _, host := range []string{m.Hostname, "n1.lab", "a&b<c>"} {
			m.Hostname = host
			out, err := h.Render(m)
			require.NoError(t, err)
			tp := h.compiled(m.Inventory()).tmpl[m.Profile.IgnitionID]
			text, err := tp.execute(Data(m))
			require.NoError(t, err)
			direct, err := Convert(tp.Name, text)
			require.NoError(t, err)
			assert.Equal(t, string(direct.JSON), string(out.JSON), "%s %q", q, host)
		}
	}
}
