package ignition

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
)

func TestValidate(t *testing.T) {
	v, _, err := Validate([]byte(`{"ignition":{"version":"3.3.0"}}`))
	require.NoError(t, err)
	assert.Equal(t, "3.3.0", v)

	_, _, err = Validate([]byte("{\"ignition\":{\"version\":\"3.4.0\"},\n\"storage\":{\"files\":[{\"path\":\"relative\"}]}}"))
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.Contains(t, err.Error(), "line 2")
	assert.Contains(t, err.Error(), "spec 3.4.0")

	_, _, err = Validate([]byte(`{"ignition":{"version":"2.2.0"}}`))
	assert.ErrorIs(t, err, ErrUnsupportedVersion)
	_, _, err = Validate([]byte(`not json`))
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, _, err = Validate(nil)
	assert.Error(t, err)

	// The validator the tests rely on does reject what Validate rejects.
	if _, err := exec.LookPath("go"); err == nil {
		ft := &fakeTB{TB: t}
		func() {
			defer func() { _ = recover() }()
			ignitionValidate(ft, []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"relative"}]}}`))
		}()
		assert.True(t, ft.failed, "ignition-validate accepted a relative file path")
	}
}

// fakeTB records a failure instead of failing the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Errorf(string, ...any) { f.failed = true }
func (f *fakeTB) FailNow()              { f.failed = true; panic("failnow") }
func (f *fakeTB) Helper()               {}

func render(t *testing.T, name, src string, data map[string]any) (Output, error) {
	t.Helper()
	tp, err := Compile(name, []byte(src))
	if err != nil {
		return Output{}, err
	}
	return tp.Render(data)
}

// TestServedVersionIsButanes: the config is served as the spec version
// Butane emitted for the variant, never translated up to the experimental
// one config.Parse returns.
func TestServedVersionIsButanes(t *testing.T) {
	for header, want := range map[string]string{
		"variant: flatcar\nversion: 1.0.0\n": "3.3.0",
		"variant: flatcar\nversion: 1.1.0\n": "3.4.0",
		"variant: fcos\nversion: 1.4.0\n":    "3.3.0",
		"variant: fcos\nversion: 1.5.0\n":    "3.4.0",
		"variant: fcos\nversion: 1.6.0\n":    "3.5.0",
	} {
		out, err := render(t, "x.yaml", header+"passwd:\n  users:\n    - name: debug\n", nil)
		require.NoError(t, err, header)
		assert.Equal(t, want, out.Version, header)
		c := decodeConfig(t, out.JSON)
		assert.Equal(t, want, c.Ignition.Version, header)
		ignitionValidate(t, out.JSON)
	}
}

func TestJSONTemplate(t *testing.T) {
	src := `{
  "ignition": {"version": "3.2.0"},
  "passwd": {"users": [{"name": "debug", "sshAuthorizedKeys": ["{{.ssh_authorized_key}}"]}]}
}`
	out, err := render(t, "x.ign", src, map[string]any{"ssh_authorized_key": testKey})
	require.NoError(t, err)
	assert.Equal(t, "3.2.0", out.Version)
	assert.Equal(t, `{"ignition":{"version":"3.2.0"},"passwd":{"users":[{"name":"debug","sshAuthorizedKeys":["`+testKey+`"]}]}}`, string(out.JSON))

	// An experimental variant is served as such, with a warning.
	out, err = render(t, "e.yaml", "variant: flatcar\nversion: 1.2.0-experimental\n", nil)
	require.NoError(t, err)
	assert.Equal(t, ExperimentalVersion, out.Version)
	assert.Contains(t, strings.Join(out.Warnings, "\n"), "experimental")

	// Butane written as JSON is Butane.
	out, err = render(t, "b.json", `{"variant": "fcos", "version": "1.5.0", "passwd": {"users": [{"name": "debug"}]}}`, nil)
	require.NoError(t, err)
	assert.Equal(t, "3.4.0", out.Version)

	// Invalid per Ignition: the error names the file and the line.
	_, err = render(t, "bad.ign", "{\n\"ignition\": {\"version\": \"3.2.0\"},\n\"storage\": {\"files\": [{\"path\": \"etc/x\"}]}\n}", nil)
	var te *TemplateError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "ignition/bad.ign", te.File)
	assert.Equal(t, StageValidate, te.Stage)
	assert.Equal(t, 3, te.Line)
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

func TestTemplateErrorsNameFileAndLine(t *testing.T) {
	for name, tc := range map[string]struct {
		src   string
		data  map[string]any
		stage string
		line  int
	}{
		"parse":                {"variant: flatcar\nversion: 1.0.0\n{{.x\n", nil, StageParse, 3},
		"missing metadata key": {"variant: flatcar\nversion: 1.0.0\npasswd:\n  users:\n    - name: {{.user}}\n", map[string]any{}, StageExecute, 5},
		"yaml syntax":          {"variant: flatcar\nversion: 1.0.0\npasswd:\n  users:\n    - name: @a\n", nil, StageTranslate, 5},
		"duplicate key":        {"variant: flatcar\nversion: 1.0.0\npasswd:\n  users:\n    - name: a\n      name: b\n", nil, StageTranslate, 6},
		"unknown variant":      {"variant: windows\nversion: 1.0.0\n", nil, StageTranslate, 0},
		"butane validation":    {"variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: relative/path\n", nil, StageTranslate, 5},
		"local file":           {"variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/passwd-copy\n      contents:\n        local: /etc/passwd\n", nil, StageTranslate, 7},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := render(t, "t.yaml.tmpl", tc.src, tc.data)
			var te *TemplateError
			require.ErrorAs(t, err, &te)
			assert.ErrorIs(t, err, ErrTemplate)
			assert.Equal(t, "ignition/t.yaml.tmpl", te.File)
			assert.Equal(t, tc.stage, te.Stage, "%v", err)
			assert.Equal(t, tc.line, te.Line, "%v", err)
			assert.Contains(t, err.Error(), "ignition/t.yaml.tmpl")
			assert.NotContains(t, te.Short(), "\n")
			assert.NotContains(t, err.Error(), "<no value>")
		})
	}
}

func TestQueryParams(t *testing.T) {
	tp, err := Compile("q", []byte(`{{.request.query.mac}} {{if .request.query.os}}{{$.request.query.uuid}}{{end}} {{index .request.query "x"}} {{.request.raw_query}}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"mac", "os", "uuid"}, tp.QueryParams())
	_, err = tp.Execute(map[string]any{"request": map[string]any{"query": map[string]string{"mac": "m"}}})
	assert.ErrorIs(t, err, ErrMissingParam)
	assert.Contains(t, err.Error(), `"os"`)
	out, err := tp.Execute(map[string]any{"request": map[string]any{"query": map[string]string{"mac": "m", "os": "o", "uuid": "u"}, "raw_query": "r"}})
	require.NoError(t, err)
	assert.Equal(t, "m u  r", string(out))
}

func TestData(t *testing.T) {
	g := &profile.Group{ID: "g", Profile: "p", Metadata: map[string]any{"disk": "/dev/sdb", "MAC": "shadowed", "os": "shadowed"},
		Selector: map[string]string{"mac": "00:30:48:fb:e2:44", "os": "installed"}}
	m := &profile.Machine{
		MAC: hwaddr.MustParse("00:30:48:FB:E2:44"), UUID: "4c4c4544-0000-1000-8000-000000000001", Hostname: "smpc.lab",
		BaseURL: "http://deploy.lab:8080", Attrs: map[string]string{"mac": "00:30:48:fb:e2:44", "os": "installed"},
		RawQuery: "mac=00-30-48-FB-E2-44&os=installed&uuid=", Group: g, Profile: &profile.Profile{ID: "p"},
	}
	d := Data(m)
	assert.Equal(t, "/dev/sdb", d["disk"])
	assert.Equal(t, "installed", d["os"], "selector keys at the top level, over metadata (matchbox)")
	assert.Equal(t, "00:30:48:fb:e2:44", d["mac"])
	assert.Equal(t, "00:30:48:fb:e2:44", d["MAC"], "profile fields win over metadata keys")
	assert.Equal(t, "00-30-48-fb-e2-44", d["MACHyphen"])
	assert.Equal(t, "003048fbe244", d["MACRaw"])
	assert.Equal(t, "smpc.lab", d["Hostname"])
	assert.Equal(t, "http://deploy.lab:8080", d["BaseURL"])
	req := d["request"].(map[string]any)
	assert.Equal(t, "mac=00-30-48-FB-E2-44&os=installed&uuid=", req["raw_query"])
	assert.Equal(t, map[string]string{"mac": "00:30:48:fb:e2:44", "os": "installed", "uuid": ""}, req["query"],
		"canonical MAC; empty uuid= present as in matchbox")
	assert.Equal(t, "/dev/sdb", d["Metadata"].(map[string]any)["disk"])
}

func TestCheck(t *testing.T) {
	for _, dir := range []string{seedLab} {
		if _, err := os.Stat(dir); err != nil {
			t.Skipf("seed-lab fixture not found at %s", dir)
		}
		inv, err := profile.LoadFS(os.DirFS(dir))
		require.NoError(t, err)
		require.NoError(t, Check(inv))
	}

	base := profile.Data{
		Profiles: []profile.Profile{{ID: "install", IgnitionID: "install.yaml.tmpl"}},
		Groups: []profile.Group{
			{ID: "default", Profile: "install", Metadata: map[string]any{"disk": "/dev/sda"}, Source: "groups/default.json"},
			{ID: "smpc", Profile: "install", Selector: map[string]string{"mac": "00:30:48:fb:e2:44"}, Metadata: map[string]any{"disk": "/dev/sdb"}},
		},
		Templates: map[string][]byte{"install.yaml.tmpl": []byte("variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /opt/disk\n      contents:\n        inline: {{.disk}} {{.request.query.mac}}\n")},
	}
	inv, err := profile.New(base)
	require.NoError(t, err)
	require.NoError(t, Check(inv))

	// One group lacks a metadata key the template needs: the error names
	// the group, its file, the template and the line.
	base.Groups[0].Metadata = map[string]any{}
	inv, err = profile.New(base)
	require.NoError(t, err)
	err = Check(inv)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrTemplate)
	msg := err.Error()
	assert.Contains(t, msg, `group "default" (groups/default.json)`)
	assert.Contains(t, msg, "ignition/install.yaml.tmpl line 7")
	assert.Contains(t, msg, `"disk"`)
	assert.NotContains(t, msg, `group "smpc"`)

	// A syntax error in the template is reported once, for the file.
	base.Templates["install.yaml.tmpl"] = []byte("variant: flatcar\nversion: 1.0.0\n{{if}}\n")
	inv, err = profile.New(base)
	require.NoError(t, err)
	err = Check(inv)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ignition/install.yaml.tmpl line 3: parse")
	assert.Equal(t, 1, strings.Count(err.Error(), "ignition/install.yaml.tmpl"))

	// Check as FSStore.Check: a broken inventory is not loaded.
	var te *TemplateError
	assert.True(t, errors.As(err, &te))
}
