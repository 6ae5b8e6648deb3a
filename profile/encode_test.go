package profile_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"text/template"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
)

// linuxParams splits a kernel command line the way Linux does
// (lib/cmdline.c next_arg, kernel/params.c parse_args): parameters are
// separated by white space outside double quotes, a '"' toggles quoting
// and has no escape; parsing stops at a bare "--" (the rest is init's).
func linuxParams(cmdline string) []string {
	var out []string
	s := cmdline
	for {
		s = strings.TrimLeft(s, " \t\n\v\f\r")
		if s == "" {
			return out
		}
		inQuote := false
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if !inQuote && strings.IndexByte(" \t\n\v\f\r", c) >= 0 {
				break
			}
			if c == '"' {
				inQuote = !inQuote
			}
		}
		arg := s[:i]
		s = s[i:]
		if arg == "--" {
			return out
		}
		out = append(out, arg)
	}
}

func TestLinuxParamsModel(t *testing.T) {
	assert.Equal(t, []string{"a=1", `b="x y"`, "c"}, linuxParams(` a=1  b="x y" c`))
	assert.Equal(t, []string{"h=x", "init=/bin/sh"}, linuxParams("h=x init=/bin/sh"))
	assert.Equal(t, []string{`"h=a\"`, `init=/bin/sh`, `x=\""`}, linuxParams(`"h=a\" init=/bin/sh x=\""`), "no backslash escape")
	assert.Equal(t, []string{"a"}, linuxParams("a -- init=/bin/sh"))
}

// hostnameInventory has one profile whose kernel, initrd and arguments
// carry values from the network: the hostname (from the request or DHCP),
// the MAC, the UUID and a request label.
func hostnameInventory(t testing.TB) *profile.Inventory {
	t.Helper()
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{
			Kernel: "/assets/{{.Hostname}}/vmlinuz",
			Initrd: []string{"/assets/initrd-{{.Labels.rack}}.img"},
			Args: []string{
				"console=ttyS0",
				"hostname={{.Hostname}}",
				"{{if .Hostname}}named={{.Hostname}}{{end}}",
				`quoted="a {{.Hostname}} b"`,
				"url={{.BaseURL}}/ignition?mac=${mac}&uuid=${uuid}&rack={{.Labels.rack}}",
				"md={{.Metadata.disk}}",
			},
		}}},
		Groups: []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"rack": "r1"}, Metadata: map[string]any{"disk": "/dev/sda"}}},
	})
	require.NoError(t, err)
	return inv
}

func hostnameMachine(t testing.TB, inv *profile.Inventory, hostname, rack string) *profile.Machine {
	t.Helper()
	r := &profile.Resolver{Store: inv, BaseURL: "http://10.0.0.1:8080"}
	m, err := r.Resolve(context.Background(), map[string]string{"mac": "52:54:00:00:00:01", "rack": "r1"}, "mac=52:54:00:00:00:01&rack=r1")
	require.NoError(t, err)
	// As a library user's FactSource or a future bug could: the values
	// reach the renderer unvalidated.
	m.Hostname = hostname
	m.Attrs = map[string]string{"mac": "52:54:00:00:00:01", "rack": rack}
	return m
}

// TestRenderBootKernelAttack is issue #14's attack on the kernel command
// line: a hostname with a space (or a quote) must not become a second
// kernel parameter; it cannot be encoded, so the render fails with a
// ValueError naming the field.
func TestRenderBootKernelAttack(t *testing.T) {
	inv := hostnameInventory(t)
	benign, err := hostnameMachine(t, inv, "n1.lab", "r1").RenderBoot()
	require.NoError(t, err)
	want := linuxParams(strings.Join(benign.Args, " "))
	require.Len(t, want, 6)
	assert.Equal(t, "hostname=n1.lab", benign.Args[1])
	assert.Equal(t, "/assets/n1.lab/vmlinuz", benign.Kernel)

	for _, h := range []string{
		"x init=/bin/sh",
		"x\"\n    - path: /etc/sudoers.d/evil\n      contents:\n        inline: \"ALL ALL=(ALL) NOPASSWD: ALL",
		`x" init=/bin/sh "`,
		"x\tinit=/bin/sh",
		"x\x00y",
		"caf\u00e9",
		"x\u00a0init=/bin/sh",
	} {
		b, err := hostnameMachine(t, inv, h, "r1").RenderBoot()
		require.Error(t, err, "%q rendered as %q", h, b.Args)
		assert.ErrorIs(t, err, profile.ErrBadValue, h)
		var ve *profile.ValueError
		require.ErrorAs(t, err, &ve, h)
		assert.Equal(t, "Hostname", ve.Field)
		assert.Equal(t, "kernel command line", ve.Format)
		assert.Empty(t, b.Args, "nothing rendered on error")
	}
	// The same through a request label.
	_, err = hostnameMachine(t, inv, "n1.lab", "r1 init=/bin/sh").RenderBoot()
	var ve *profile.ValueError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "Labels.rack", ve.Field)

	// A value that ends the kernel's parameters is refused too.
	inv2, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k", Args: []string{"{{.Labels.x}}", "console=ttyS0"}}}},
		Groups:   []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"x": "y"}}},
	})
	require.NoError(t, err)
	m := &profile.Machine{Attrs: map[string]string{"x": "--"}, Profile: mustProfile(t, inv2, "p")}
	_, err = m.RenderBoot()
	assert.ErrorIs(t, err, profile.ErrBadValue)
}

func mustProfile(t testing.TB, inv *profile.Inventory, id string) *profile.Profile {
	p, ok := inv.Profile(id)
	require.True(t, ok)
	return p
}

// TestRenderBootValuesVerbatim: values that can be encoded are rendered
// as they are, wherever they are in a string, including text that looks
// like the renderer's own placeholders; trusted text is never touched.
func TestRenderBootValuesVerbatim(t *testing.T) {
	inv := hostnameInventory(t)
	for _, h := range []string{"n1.lab", "Xmb0zfY", "Xmb0zlY", "a=b,c:d", "'$(reboot)'", "{{.MAC}}", "%s"} {
		b, err := hostnameMachine(t, inv, h, "r1").RenderBoot()
		require.NoError(t, err, h)
		assert.Equal(t, "hostname="+h, b.Args[1])
		assert.Equal(t, "named="+h, b.Args[2])
		assert.Equal(t, `quoted="a `+h+` b"`, b.Args[3])
		assert.Equal(t, "url=http://10.0.0.1:8080/ignition?mac=52:54:00:00:00:01&uuid=&rack=r1", b.Args[4])
		assert.Equal(t, "/assets/"+h+"/vmlinuz", b.Kernel)
		assert.Equal(t, []string{"/assets/initrd-r1.img"}, b.Initrd)
		assert.Len(t, linuxParams(strings.Join(b.Args, " ")), 6)
	}
	// An empty hostname: {{if .Hostname}} is false, the argument dropped.
	b, err := hostnameMachine(t, inv, "", "r1").RenderBoot()
	require.NoError(t, err)
	assert.Equal(t, []string{"console=ttyS0", "hostname=", `quoted="a  b"`, "url=http://10.0.0.1:8080/ignition?mac=52:54:00:00:00:01&uuid=&rack=r1", "md=/dev/sda"}, b.Args)

	// Trusted metadata that contains what would be a placeholder prefix
	// is rendered as written.
	inv3, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k", Args: []string{"a={{.Metadata.x}}{{.Hostname}}Xmb1z", "b={{.Hostname}}"}}}},
		Groups:   []profile.Group{{ID: "g", Profile: "p", Metadata: map[string]any{"x": "Xmb0zeY", "l": []any{"Xmb2z", map[string]any{"y": "Xmb3z"}}}}},
	})
	require.NoError(t, err)
	m := &profile.Machine{Hostname: "h", Profile: mustProfile(t, inv3, "p"), Group: inv3.Groups()[0]}
	b, err = m.RenderBoot()
	require.NoError(t, err)
	assert.Equal(t, []string{"a=Xmb0zeYhXmb1z", "b=h"}, b.Args)
}

// TestRenderBootLogicUse: a profile string that uses a network value in
// logic (here as an argument of eq and printf) is rendered with the real
// value, which must then pass the kernel command line's rule first.
func TestRenderBootLogicUse(t *testing.T) {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k", Args: []string{
			`{{if eq .Hostname "n1.lab"}}first=1{{end}}`,
			`h={{printf "%.20s" .Hostname}}`,
			"mac={{.MAC}}",
		}}}},
		Groups: []profile.Group{{ID: "g", Profile: "p"}},
	})
	require.NoError(t, err)
	p := mustProfile(t, inv, "p")
	mac := hwaddr.MustParse("52:54:00:00:00:01")
	m := &profile.Machine{MAC: mac, Hostname: "n1.lab", Profile: p}
	b, err := m.RenderBoot()
	require.NoError(t, err)
	assert.Equal(t, []string{"first=1", "h=n1.lab", "mac=52:54:00:00:00:01"}, b.Args)
	for _, h := range []string{"x init=/bin/sh", `a"b`, "\n"} {
		m = &profile.Machine{MAC: mac, Hostname: h, Profile: p}
		_, err = m.RenderBoot()
		assert.ErrorIs(t, err, profile.ErrBadValue, "%q", h)
	}
	// No machine at all: an error at render time, not "mac=" in the
	// kernel line (issue #16: /grub without mac answered 200).
	_, err = (&profile.Machine{Hostname: "n1.lab", Profile: p}).RenderBoot()
	assert.ErrorIs(t, err, profile.ErrBadValue)
}

// TestFindLogicUses: what counts as printing or testing a value, and what
// as using it in logic.
func TestFindLogicUses(t *testing.T) {
	leaf := func(f []string) (string, bool) {
		switch f[0] {
		case "Hostname", "MAC":
			return f[0], len(f) == 1
		case "Labels":
			return f[0], len(f) == 2
		}
		return "", false
	}
	for src, want := range map[string][]string{
		`{{.Hostname}} {{$.Labels.os}} {{.Metadata.x}} {{.BaseURL | printf "%s"}}`:            nil,
		`{{if .Hostname}}a{{else if not .MAC}}b{{end}}{{if and .Hostname .Labels.os}}{{end}}`: nil,
		`{{if .Labels}}x{{end}}{{range .Metadata.list}}{{.Hostname}}{{eq . "x"}}{{end}}`:      nil,
		`{{define "t"}}{{.Hostname}}{{end}}{{template "t" .}}{{with .Metadata}}{{.x}}{{end}}`: nil,
		`{{eq .Hostname "x"}}`:                            {"Hostname"},
		`{{.Hostname | printf "%s"}}`:                     {"Hostname"},
		`{{printf "%s" .MAC}}{{.Hostname}}`:               {"MAC"},
		`{{$h := .Hostname}}{{$h}}`:                       {"Hostname"},
		`{{with .Hostname}}{{.}}{{end}}`:                  {"Hostname"},
		`{{range .Labels}}{{.}}{{end}}`:                   {"Labels"},
		`{{.Labels}}`:                                     {"Labels"},
		`{{index .Labels "os"}}`:                          {"Labels"},
		`{{index . "Hostname"}}`:                          {""},
		`{{.}}`:                                           {""},
		`{{range $k, $v := .}}{{$v}}{{end}}`:              {""},
		`{{template "t" .Hostname}}{{define "t"}}{{end}}`: {"Hostname"},
		`{{if eq .MAC "x"}}{{end}}`:                       {"MAC"},
		`{{(.Labels).os}}`:                                {"Labels"},
	} {
		tp := template.Must(template.New("x").Parse(src))
		var got []string
		for _, u := range profile.FindLogicUses(tp, leaf) {
			got = append(got, u.Root)
			assert.Contains(t, u.Where, "x:1:", src)
			assert.NotEmpty(t, u.What, src)
		}
		assert.Equal(t, want, got, src)
	}
}

// FuzzRenderHostileKernelArgs renders hostile hostnames and labels into
// kernel arguments, kernel and initrd paths: either the render fails with
// ErrBadValue, or the kernel command line has exactly the parameters of a
// benign render, each value in place.
func FuzzRenderHostileKernelArgs(f *testing.F) {
	for _, s := range []string{"x init=/bin/sh", `x" init=/bin/sh "`, "x\n", "--", "\"", "Xmb0zeY", "é", "a=b", "\x7f", ""} {
		f.Add(s, "r1")
		f.Add("n1", s)
	}
	inv := hostnameInventory(f)
	f.Fuzz(func(t *testing.T, hostname, rack string) {
		b, err := hostnameMachine(t, inv, hostname, rack).RenderBoot()
		if err != nil {
			if !errors.Is(err, profile.ErrBadValue) {
				t.Fatalf("%q %q: error is not ErrBadValue: %v", hostname, rack, err)
			}
			return
		}
		params := linuxParams(strings.Join(b.Args, " "))
		want := 6
		if hostname == "" {
			want = 5
		}
		if len(params) != want {
			t.Fatalf("%q %q: %d kernel parameters, want %d: %q", hostname, rack, len(params), want, params)
		}
		if params[1] != "hostname="+hostname || b.Kernel != "/assets/"+hostname+"/vmlinuz" || b.Initrd[0] != "/assets/initrd-"+rack+".img" {
			t.Fatalf("%q %q: values not in place: %q %q %q", hostname, rack, b.Kernel, b.Initrd, params)
		}
	})
}
