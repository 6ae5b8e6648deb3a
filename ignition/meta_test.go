package ignition

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/internal/fixtures"
	"github.com/metalboot/metalboot/profile"
)

// renderBoth renders data with metadata placeholders through c and with
// the real values, and requires the same config (or both errors).
func renderBoth(t *testing.T, tp *Template, data map[string]any, c convCache) Output {
	t.Helper()
	got, _, err := tp.render(data, c)
	want, _, werr := tp.renderMode(data, nil, false)
	if werr != nil {
		require.Error(t, err, "the real values fail (%v) but the placeholders rendered", werr)
		assert.Equal(t, werr.Error(), err.Error())
		return Output{}
	}
	require.NoError(t, err)
	require.Equal(t, string(want.JSON), string(got.JSON))
	return got
}

// TestMetadataSharesOneTranslation: groups that differ only in metadata a
// template prints share one Butane translation, and every config is the
// one the real values give.
func TestMetadataSharesOneTranslation(t *testing.T) {
	src := "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n" +
		"    - path: /etc/hostname\n      contents:\n        inline: {{.hostname}}\n" +
		"    - path: /etc/metalboot/{{.hostname}}\n      contents:\n        inline: \"ip={{.ip}} disk={{.disk}}\"\n" +
		"systemd:\n  units:\n    - name: hello.service\n      contents: |\n        [Service]\n        ExecStart=/bin/echo {{$.hostname}} {{.MAC}}\n"
	tp, err := Compile("t.yaml", []byte(src))
	require.NoError(t, err)
	require.Equal(t, []string{"disk", "hostname", "ip"}, tp.meta)
	c := mapCache{}
	seen := map[string]bool{}
	for i := range 50 {
		data := Data(&profile.Machine{MAC: SampleMAC})
		data["hostname"] = fmt.Sprintf("node-%d.lab", i)
		data["ip"] = fmt.Sprintf("10.0.%d.%d", i/256, i%256)
		data["disk"] = "/dev/disk/by-id/wwn-0x5000c500a" + fmt.Sprint(i)
		out := renderBoth(t, tp, data, c)
		seen[string(out.JSON)] = true
	}
	assert.Len(t, seen, 50, "every group its own config")
	assert.Len(t, c, 1, "one translation for all of them")

	// A value with characters YAML may alter is rendered with the real
	// value: its own translation, still the same config.
	data := Data(&profile.Machine{MAC: SampleMAC})
	data["hostname"], data["ip"], data["disk"] = "odd host", "fd00::1", "#x"
	renderBoth(t, tp, data, c)
	assert.Len(t, c, 2)
}

// TestMetadataFallsBack: where a placeholder cannot stand for the value
// (Butane escapes it, drops it, or it is not a string), the text is
// translated with the real values, and the config is what they give.
func TestMetadataFallsBack(t *testing.T) {
	cases := []struct {
		name, src string
		meta      map[string]any
		fallback  bool // the placeholders' translation is refused
	}{
		{"comment", "variant: flatcar\nversion: 1.0.0\n# {{.x}}\nstorage:\n  files:\n    - path: /etc/a\n      contents:\n        inline: {{.x}}\n",
			map[string]any{"x": "abc"}, true},
		{"object key", "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/a\n      {{.x}}: 420\n",
			map[string]any{"x": "mode"}, true},
		{"number", "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/a\n      mode: {{.x}}\n",
			map[string]any{"x": "420"}, true},
		{"mount unit name escapes", "variant: fcos\nversion: 1.5.0\nstorage:\n  filesystems:\n    - path: /var/{{.x}}\n      device: /dev/disk/by-label/data\n      format: xfs\n      with_mount_unit: true\n",
			map[string]any{"x": "lib-data"}, true},
		{"in a path", "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/{{.x}}\n      contents:\n        inline: a\n",
			map[string]any{"x": "a/b.conf"}, false},
		{"duplicate path after filling", "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/{{.x}}\n    - path: /etc/{{.y}}\n",
			map[string]any{"x": "same", "y": "same"}, false},
		{"url", "variant: flatcar\nversion: 1.0.0\nignition:\n  config:\n    merge:\n      - source: http://{{.x}}/c.ign\n",
			map[string]any{"x": "deploy.lab"}, false},
		{"quoted styles", "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/a\n      contents:\n        inline: '{{.x}}'\n    - path: /etc/b\n      contents:\n        inline: \"{{.x}}\\t\"\n    - path: /etc/c\n      contents:\n        inline: >\n          {{.x}}\n          {{.x}}\n",
			map[string]any{"x": "v1.2_3+4=5/6-7"}, false},
		{"used in logic", "variant: flatcar\nversion: 1.0.0\n{{if eq .x \"a\"}}storage:\n  files:\n    - path: /etc/{{.x}}\n{{end}}",
			map[string]any{"x": "a"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := Compile("t.yaml", []byte(tc.src))
			require.NoError(t, err)
			data := Data(&profile.Machine{MAC: SampleMAC})
			for k, v := range tc.meta {
				data[k] = v
			}
			c := mapCache{}
			renderBoth(t, tp, data, c)
			fell := false
			for _, e := range c {
				fell = fell || e.fallback
			}
			assert.Equal(t, tc.fallback, fell, "placeholder translation refused")
		})
	}
}

// TestMetadataFixtures: every group of the seed lab (the embedded copy and
// the shared fixture) renders the same config with metadata placeholders
// as with the real values, for its sample machine.
func TestMetadataFixtures(t *testing.T) {
	invs := map[string]*profile.Inventory{}
	inv, err := profile.LoadFS(fixtures.SeedLab())
	require.NoError(t, err)
	invs["internal/fixtures/seedlab"] = inv
	if _, err := os.Stat(seedLab); err == nil {
		inv, err := profile.LoadFS(os.DirFS(seedLab))
		require.NoError(t, err)
		invs[seedLab] = inv
	}
	for dir, inv := range invs {
		s := compileInventory(inv)
		n := 0
		for _, g := range inv.Groups() {
			p, ok := inv.Profile(g.Profile)
			if !ok || s.tmpl[p.IgnitionID] == nil {
				continue
			}
			tp := s.tmpl[p.IgnitionID]
			t.Run(dir+"/"+g.ID, func(t *testing.T) {
				renderBoth(t, tp, Data(sampleMachine(g, p, tp)), mapCache{})
			})
			n++
		}
		require.Positive(t, n, "%s: no group with a template", dir)
	}
}
