package grubcfg

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/fixtures"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

func demoResolver(t testing.TB) *profile.Resolver {
	t.Helper()
	st, err := profile.OpenFS(demo.FS(), nil, nil)
	require.NoError(t, err)
	return &profile.Resolver{Store: st, BaseURL: "http://172.22.10.2:8080"}
}

func seedResolver(t testing.TB) *profile.Resolver {
	t.Helper()
	st, err := profile.OpenFS(fixtures.SeedLab(), nil, nil)
	require.NoError(t, err)
	return &profile.Resolver{Store: st, BaseURL: "http://deploy.lab:8080"}
}

func resolve(t testing.TB, r *profile.Resolver, query string) *profile.Machine {
	t.Helper()
	attrs, err := profile.ParseQuery(query)
	require.NoError(t, err)
	m, err := r.Resolve(context.Background(), attrs, query)
	require.NoError(t, err, query)
	return m
}

// linuxLines returns, per menu entry id, the words of its linux command,
// read back with the lexer model.
func linuxLines(t *testing.T, cfg string) map[string][]string {
	t.Helper()
	toks, err := lexGRUB(cfg)
	require.NoError(t, err)
	out := map[string][]string{}
	id := ""
	for _, c := range commands(toks) {
		if c[0] == "menuentry" && len(c) >= 4 && c[2] == "--id" {
			id = c[3]
		}
		if strings.HasPrefix(c[0], "linux") || strings.HasPrefix(c[0], "initrd") {
			for _, w := range c {
				assert.NotContains(t, w, "<VAR", "%s: no variable may be left for GRUB to expand", c[0])
			}
		}
		if strings.HasPrefix(c[0], "linux") {
			out[id] = c
		}
	}
	return out
}

func TestRenderGolden(t *testing.T) {
	demoR, seedR := demoResolver(t), seedResolver(t)
	for _, tc := range []struct {
		name  string
		r     *profile.Resolver
		query string
		opts  Options
		local bool
	}{
		{"demo-mp", demoR, "mac=00:23:32:2f:40:3c", Options{}, false},
		{"demo-smpc", demoR, "mac=00-30-48-FB-E2-44", Options{Serial: &Serial{}}, false},
		{"demo-default", demoR, "mac=52:54:00:12:34:56&uuid=4C4C4544-0042-3510-8052-B4C04F4E4B31", Options{Timeout: 5}, false},
		{"seedlab-mp", seedR, "mac=00:23:32:2f:40:3c", Options{}, false},
		{"seedlab-smpc", seedR, "mac=00:30:48:fb:e2:44", Options{}, false},
		{"seedlab-default", seedR, "mac=52:54:00:ab:cd:ef", Options{}, false},
		{"seedlab-default-uuid", seedR, "mac=52:54:00:ab:cd:ef&uuid=8a3b0c52-1d2e-4f5a-9b6c-7d8e9f0a1b2c", Options{EFILoader: LoaderLinuxEFI}, false},
		{"local", demoR, "mac=00:23:32:2f:40:3c", Options{}, true},
		{"local-serial-hd1", demoR, "mac=00:30:48:fb:e2:44", Options{Serial: &Serial{}, LocalDisk: "hd1"}, true},
		{"local-biosexit", demoR, "mac=00:30:48:fb:e2:44", Options{BIOSExit: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := resolve(t, tc.r, tc.query)
			var buf bytes.Buffer
			if tc.local {
				require.NoError(t, RenderLocal(&buf, m, tc.opts))
			} else {
				require.NoError(t, Render(&buf, m, tc.opts))
			}
			golden(t, tc.name, buf.Bytes())
			requireGRUBAccepts(t, buf.String())
			assert.NotContains(t, buf.String(), "&&")
		})
	}
}

// TestSeedLabAnswers checks the answers the seed lab's README requires.
func TestSeedLabAnswers(t *testing.T) {
	r := seedResolver(t)
	render := func(q string) string {
		var buf bytes.Buffer
		require.NoError(t, Render(&buf, resolve(t, r, q), Options{}))
		requireGRUBAccepts(t, buf.String())
		return buf.String()
	}
	for _, mac := range []string{"00:23:32:2f:40:3c", "00:30:48:fb:e2:44"} {
		lines := linuxLines(t, render("mac="+mac))
		require.Len(t, lines, 2, "an EFI and a BIOS entry")
		for id, words := range lines {
			assert.Contains(t, words, "coreos.config.url=http://deploy.lab:8080/ignition?mac="+mac, "entry %s", id)
			assert.Equal(t, "/assets/coreos/1409.5.0/coreos_production_pxe.vmlinuz", words[1])
			for _, w := range words {
				assert.NotContains(t, w, "$", "entry %s: boot-loader variable left", id)
			}
		}
	}
	// Any other MAC: the default profile; ${mac:hexhyp} → hyphen MAC,
	// ${uuid} → the request's uuid or empty.
	for q, want := range map[string]string{
		"mac=52:54:00:AB:CD:EF": "coreos.config.url=http://deploy.lab:8080/ignition?uuid=&mac=52-54-00-ab-cd-ef",
		"mac=52:54:00:ab:cd:ef&uuid=8A3B0C52-1D2E-4F5A-9B6C-7D8E9F0A1B2C": "coreos.config.url=http://deploy.lab:8080/ignition?uuid=8a3b0c52-1d2e-4f5a-9b6c-7d8e9f0a1b2c&mac=52-54-00-ab-cd-ef",
	} {
		lines := linuxLines(t, render(q))
		require.Len(t, lines, 2)
		for id, words := range lines {
			assert.Contains(t, words, want, "%s entry %s", q, id)
		}
	}
}

func TestSeedLabUUIDFromFacts(t *testing.T) {
	r := seedResolver(t)
	r.Facts = profile.FactSourceFunc(func(_ context.Context, m hwaddr.MAC) (profile.Facts, bool) {
		return profile.Facts{UUID: "8a3b0c52-1d2e-4f5a-9b6c-7d8e9f0a1b2c"}, true
	})
	var buf bytes.Buffer
	require.NoError(t, Render(&buf, resolve(t, r, "mac=52:54:00:ab:cd:ef"), Options{}))
	assert.Contains(t, buf.String(), "ignition?uuid=8a3b0c52-1d2e-4f5a-9b6c-7d8e9f0a1b2c&mac=52-54-00-ab-cd-ef'")
}

func TestDemoArgsCarryMAC(t *testing.T) {
	r := demoResolver(t)
	var buf bytes.Buffer
	require.NoError(t, Render(&buf, resolve(t, r, "mac=00:23:32:2f:40:3c"), Options{}))
	for id, words := range linuxLines(t, buf.String()) {
		assert.Contains(t, words, "ignition.config.url=http://172.22.10.2:8080/ignition?mac=00:23:32:2f:40:3c", id)
	}
}

func TestRenderErrors(t *testing.T) {
	r := demoResolver(t)
	m := resolve(t, r, "mac=00:23:32:2f:40:3c&os=installed")
	var buf bytes.Buffer
	err := Render(&buf, m, Options{})
	assert.ErrorIs(t, err, ErrNoKernel, "the installed profile has no kernel")
	assert.Zero(t, buf.Len(), "nothing written on error")
	assert.ErrorIs(t, Render(&buf, nil, Options{}), ErrNoKernel)

	// Local boot needs no kernel.
	require.NoError(t, RenderLocal(&buf, m, Options{}))

	m = resolve(t, r, "mac=00:23:32:2f:40:3c")
	for _, o := range []Options{
		{Timeout: -1},
		{EFILoader: Loader{Linux: "reboot", Initrd: "initrd"}},
		{BIOSLoader: Loader{Linux: "linux"}},
		{LocalDisk: "hd0) ; reboot"},
		{Serial: &Serial{Speed: -5}},
	} {
		assert.ErrorIs(t, Render(&buf, m, o), ErrBadOption, "%+v", o)
	}
	assert.ErrorIs(t, RenderLocal(&buf, m, Options{LocalDisk: "(hd0)"}), ErrBadOption)

	for kernel, want := range map[string]error{
		"https://x/vmlinuz":    ErrUnsupportedURL,
		"ftp://x/vmlinuz":      ErrUnsupportedURL,
		"http://u:p@x/vmlinuz": ErrUnsupportedURL,
		"vmlinuz":              ErrBadPath,
	} {
		inv, err := profile.New(profile.Data{
			Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: kernel}}},
			Groups:   []profile.Group{{ID: "g", Profile: "p"}},
		})
		require.NoError(t, err)
		pr := &profile.Resolver{Store: inv}
		err = Render(&buf, resolve(t, pr, "mac=52:54:00:00:00:01"), Options{})
		assert.True(t, errors.Is(err, want), "%s: %v", kernel, err)
	}
}

// TestRenderHostileProfile renders a profile built to break out of its
// quotes; GRUB must see exactly the values, as words of one command.
func TestRenderHostileProfile(t *testing.T) {
	hostile := []string{"a'; reboot; echo '", "x\nreboot", "$(reboot)", "} reboot {", "a&b;c|d", "\\'"}
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "evil", Name: "evil'; reboot; '", Boot: profile.Boot{
			Kernel: "http://10.0.0.1:8080/k';reboot;'",
			Initrd: []string{"/i';reboot;'$x", "--name main /j"},
			Args:   hostile,
		}}},
		Groups: []profile.Group{{ID: "g", Profile: "evil"}},
	})
	require.NoError(t, err)
	m := resolve(t, &profile.Resolver{Store: inv}, "mac=52:54:00:00:00:01")
	var buf bytes.Buffer
	require.NoError(t, Render(&buf, m, Options{}))
	requireGRUBAccepts(t, buf.String())
	toks, err := lexGRUB(buf.String())
	require.NoError(t, err)
	var names []string
	for _, c := range commands(toks) {
		names = append(names, c[0])
		if c[0] == "linux" {
			assert.Equal(t, append([]string{"linux", "(http,10.0.0.1:8080)/k';reboot;'"}, hostile...), c)
		}
		if c[0] == "initrd" {
			assert.Equal(t, []string{"initrd", "/i';reboot;'$x", "/j"}, c)
		}
	}
	assert.NotContains(t, names, "reboot")
}

func TestFilePath(t *testing.T) {
	for in, want := range map[string]string{
		"/assets/vmlinuz":                        "/assets/vmlinuz",
		"http://10.0.0.1:8080/assets/vmlinuz":    "(http,10.0.0.1:8080)/assets/vmlinuz",
		"HTTP://deploy.lab/a%20b/k?x=1&y=2":      "(http,deploy.lab)/a%20b/k?x=1&y=2",
		"http://[fd00::1]:8080/k":                "(http,[fd00::1]:8080)/k",
		"http://deploy.lab:8080":                 "(http,deploy.lab:8080)/",
		"tftp://10.0.0.1/grub/vmlinuz":           "(tftp,10.0.0.1)/grub/vmlinuz",
		"(hd0,gpt2)/boot/vmlinuz":                "(hd0,gpt2)/boot/vmlinuz",
		"(http,10.0.0.1:8080)/assets/initrd.img": "(http,10.0.0.1:8080)/assets/initrd.img",
	} {
		got, err := FilePath(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "vmlinuz", "()", "(hd0", "(hd0)x", "https://x/k", "http://", "http://a b/k",
		"http://x:0/k", "http://x:70000/k", "http://x,y/k", "tftp://x/k?q=1", "mailto:x", "http://u@x/k"} {
		_, err := FilePath(in)
		assert.Error(t, err, in)
	}
}
