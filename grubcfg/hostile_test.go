package grubcfg

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

// grubCmdlines returns the kernel command line GRUB builds from the words
// of a linux command after the kernel path, in the two ways GRUB versions
// do it (grub-core/lib/cmdline.c): the words joined with spaces (older
// GRUBs; iPXE does the same), and with every word that holds a space put
// in double quotes and backslash, single and double quote escaped with a
// backslash (GRUB 2.06 and later). Linux knows neither escape.
func grubCmdlines(words []string) []string {
	var quoted []string
	for _, w := range words {
		var b strings.Builder
		space := strings.Contains(w, " ")
		if space {
			b.WriteByte('"')
		}
		for i := 0; i < len(w); i++ {
			if c := w[i]; c == '\\' || c == '\'' || c == '"' {
				b.WriteByte('\\')
			}
			b.WriteByte(w[i])
		}
		if space {
			b.WriteByte('"')
		}
		quoted = append(quoted, b.String())
	}
	return []string{strings.Join(words, " "), strings.Join(quoted, " ")}
}

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

func TestKernelCmdlineModels(t *testing.T) {
	plain, quoted := grubCmdlines([]string{"a=1", "h=x init=/bin/sh"})[0], grubCmdlines([]string{"a=1", "h=x init=/bin/sh"})[1]
	assert.Equal(t, []string{"a=1", "h=x", "init=/bin/sh"}, linuxParams(plain))
	assert.Equal(t, []string{"a=1", `"h=x init=/bin/sh"`}, linuxParams(quoted))
	q := grubCmdlines([]string{`h=x" init=/bin/sh "`})[1]
	assert.Equal(t, `"h=x\" init=/bin/sh \""`, q)
	assert.Len(t, linuxParams(q), 3, "GRUB's backslash means nothing to Linux")
}

// kernelParams reads a rendered configuration back: for each menu entry,
// the kernel parameters Linux would see, per GRUB command-line builder.
func kernelParams(t testing.TB, cfg string) map[string][][]string {
	t.Helper()
	toks, err := lexGRUB(cfg)
	require.NoError(t, err)
	out := map[string][][]string{}
	id := ""
	for _, c := range commands(toks) {
		if c[0] == "menuentry" && len(c) >= 4 && c[2] == "--id" {
			id = c[3]
		}
		if strings.HasPrefix(c[0], "linux") {
			require.GreaterOrEqual(t, len(c), 2)
			for _, line := range grubCmdlines(c[2:]) {
				out[id] = append(out[id], linuxParams(line))
			}
		}
	}
	return out
}

// hostnameDemo is the demo inventory with the install profile's kernel
// arguments also carrying the machine's hostname, as a lab might write
// it.
func hostnameDemo(t testing.TB) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	require.NoError(t, fs.WalkDir(demo.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.FS(), p)
		if p == "profiles/install.json" {
			b = bytes.Replace(b, []byte(`"console=tty0",`), []byte(`"console=tty0", "hostname={{.Hostname}}",`), 1)
			require.Contains(t, string(b), "hostname={{.Hostname}}")
		}
		m[p] = &fstest.MapFile{Data: b}
		return err
	}))
	return m
}

var issue14Hostnames = []string{
	"x init=/bin/sh",
	`x" init=/bin/sh "`,
	"x\"\n    - path: /etc/sudoers.d/evil\n      contents:\n        inline: \"ALL ALL=(ALL) NOPASSWD: ALL",
	"x\tinit=/bin/sh",
}

// TestIssue14KernelParamsThroughFacts: issue #14's attack as sent, a
// DHCP hostname (FactSource) on the demo inventory whose kernel arguments
// carry the hostname: /grub answers, and Linux sees exactly the
// parameters of a benign machine, in every entry and with either way GRUB
// builds the command line.
func TestIssue14KernelParamsThroughFacts(t *testing.T) {
	st, err := profile.OpenFS(hostnameDemo(t), nil, nil)
	require.NoError(t, err)
	hostname := "n1.lab"
	r := &profile.Resolver{Store: st, BaseURL: "http://172.22.10.2:8080",
		Facts: profile.FactSourceFunc(func(context.Context, hwaddr.MAC) (profile.Facts, bool) {
			return profile.Facts{Hostname: hostname}, true
		})}
	h := &Handler{Resolver: r}
	render := func() map[string][][]string {
		rec := get(t, h, "mac=52:54:00:00:00:01")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		requireGRUBAccepts(t, rec.Body.String())
		return kernelParams(t, rec.Body.String())
	}
	benign := render()
	require.Len(t, benign, 2)
	for _, lines := range benign {
		for _, params := range lines {
			require.Len(t, params, 5)
			assert.Contains(t, params, "hostname=n1.lab")
		}
	}
	for _, hostname = range issue14Hostnames {
		for id, lines := range render() {
			for i, params := range lines {
				assert.Len(t, params, len(benign[id][i]), "%q entry %s: %q", hostname, id, params)
				assert.NotContains(t, params, "init=/bin/sh", hostname)
			}
		}
	}
}

// TestIssue14KernelParamsEncoded: the same values reaching the renderer
// unvalidated (a library user's FactSource, a machine built in Go): the
// renderer refuses to put them on the kernel command line, and /grub
// would answer 400 with the reason.
func TestIssue14KernelParamsEncoded(t *testing.T) {
	st, err := profile.OpenFS(hostnameDemo(t), nil, nil)
	require.NoError(t, err)
	r := &profile.Resolver{Store: st, BaseURL: "http://172.22.10.2:8080"}
	m := resolve(t, r, "mac=52:54:00:00:00:01")
	for _, hostname := range append(issue14Hostnames, "x\x00", "é") {
		m.Hostname = hostname
		var buf bytes.Buffer
		err := Render(&buf, m, Options{})
		if err == nil {
			for id, lines := range kernelParams(t, buf.String()) {
				for _, params := range lines {
					assert.Len(t, params, 5, "%q entry %s: %q", hostname, id, params)
				}
			}
			t.Fatalf("%q rendered", hostname)
		}
		assert.ErrorIs(t, err, profile.ErrBadValue, hostname)
		assert.Zero(t, buf.Len())
	}
	m.Hostname = "n1.lab"
	var buf bytes.Buffer
	require.NoError(t, Render(&buf, m, Options{}))
	for _, lines := range kernelParams(t, buf.String()) {
		for _, params := range lines {
			assert.Contains(t, params, "hostname=n1.lab")
		}
	}
}

// labelInventory boots with a request label as a whole kernel argument.
func labelInventory(t testing.TB) *profile.Inventory {
	t.Helper()
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k", Args: []string{"console=ttyS0", "{{.Labels.extra}}", "h={{.Hostname}}", "last=1"}}}},
		Groups:   []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"extra": "quiet"}}},
	})
	require.NoError(t, err)
	return inv
}

// TestHandlerBadValue: a value from the request that cannot be encoded is
// the request's fault: 400 with the reason (for GRUB, echoed), not a 500
// that blames the profile. Here a request label that would end the
// kernel's parameters.
func TestHandlerBadValue(t *testing.T) {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k", Args: []string{"console=ttyS0", `{{index .Labels "extra"}}`, "h={{.Hostname}}", "last=1"}}}},
		Groups:   []profile.Group{{ID: "d", Profile: "p"}},
	})
	require.NoError(t, err)
	var logs bytes.Buffer
	h := &Handler{Resolver: &profile.Resolver{Store: inv}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	rec := get(t, h, "mac=52:54:00:00:00:01&extra=--")
	assert.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	body := rec.Body.String()
	assert.Contains(t, body, "bad request")
	assert.Contains(t, body, "Labels.extra")
	assert.Contains(t, body, `"--"`)
	assert.NotContains(t, body, "see the server log")
	assert.Equal(t, 1, strings.Count(body, "\n"))
	assert.NotContains(t, logs.String(), "level=ERROR", "not a server error")

	req := httptest.NewRequest(http.MethodGet, "/grub?mac=52:54:00:00:00:01&extra=--", nil)
	req.Header.Set("User-Agent", "GRUB 2.06")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	requireGRUBAccepts(t, rec.Body.String())
	assert.True(t, strings.HasPrefix(rec.Body.String(), "echo '"), rec.Body.String())

	rec = get(t, h, "mac=52:54:00:00:00:01&extra=quiet")
	assert.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	for _, lines := range kernelParams(t, rec.Body.String()) {
		for _, params := range lines {
			assert.Equal(t, []string{"console=ttyS0", "quiet", "h=", "last=1"}, params)
		}
	}
}

// FuzzRenderHostileGRUB renders hostile hostnames and request labels into
// a GRUB configuration: the render fails with ErrBadValue, or GRUB's
// lexer finds one linux command per entry whose words make, with either
// GRUB command-line builder, exactly the kernel parameters of a benign
// machine, each value in place.
func FuzzRenderHostileGRUB(f *testing.F) {
	for _, s := range append(issue14Hostnames, "--", "'", "$x", "a;reboot", "}", "\\", "\x00", "Xmb0zeY") {
		f.Add(s, "quiet")
		f.Add("n1", s)
	}
	inv := labelInventory(f)
	r := &profile.Resolver{Store: inv}
	f.Fuzz(func(t *testing.T, hostname, extra string) {
		m, err := r.Resolve(context.Background(), map[string]string{"mac": "52:54:00:00:00:01", "extra": "quiet"}, "")
		require.NoError(t, err)
		m.Hostname = hostname
		m.Attrs = map[string]string{"mac": "52:54:00:00:00:01", "extra": extra}
		cfg, err := AppendConfig(nil, m, Options{})
		if err != nil {
			if !errors.Is(err, profile.ErrBadValue) {
				t.Fatalf("%q %q: %v", hostname, extra, err)
			}
			return
		}
		want := []string{"console=ttyS0", extra, "h=" + hostname, "last=1"}
		if extra == "" {
			want = []string{"console=ttyS0", "h=" + hostname, "last=1"}
		}
		entries := kernelParams(t, string(cfg))
		if len(entries) != 2 {
			t.Fatalf("%q %q: %d entries with a linux command:\n%s", hostname, extra, len(entries), cfg)
		}
		for id, lines := range entries {
			for i, params := range lines {
				// GRUB 2.06 quotes and escapes what it must; Linux then
				// sees those bytes too, but never another parameter.
				if i == 0 && !assert.ObjectsAreEqual(want, params) || len(params) != len(want) {
					t.Fatalf("%q %q: entry %s, builder %d: %q, want %q", hostname, extra, id, i, params, want)
				}
			}
		}
	})
}

// FuzzFirstStageName: names GRUB and firmware ask for over TFTP and HTTP
// are untrusted. FirstStageName never panics; a MAC it returns is exactly
// the one the name spells in GRUB's grub.cfg-01-xx-xx-xx-xx-xx-xx form;
// and the first stage pinned to it is a GRUB script whose configfile
// fetches that MAC's configuration, with no other command.
func FuzzFirstStageName(f *testing.F) {
	for _, s := range []string{
		"grub/grub.cfg-01-52-54-00-12-34-56", "grub.cfg", "grub/grub.cfg-0A630064", "grub/grub.cfg-01- 2-54-00-12-34-56",
		"grub/grub.cfg-01-5-54-00-12-34-56\t", "grub.cfg-01-52-54-00-12-34-5'", "x/grub.cfg-01-AA-BB-CC-DD-EE-FF", "/grub.cfg-\x00",
	} {
		f.Add(s)
	}
	want := commandNames(t0(f), FirstStage{HTTPAddr: "10.99.0.1:8080", MAC: hwaddr.MAC{2, 0, 0, 0, 0, 1}})
	f.Fuzz(func(t *testing.T, name string) {
		mac, ok := FirstStageName(name)
		base := name[strings.LastIndexByte(name, '/')+1:]
		if !ok {
			if !mac.IsZero() {
				t.Fatalf("%q: MAC without ok", name)
			}
			return
		}
		if !strings.HasPrefix(base, "grub.cfg") {
			t.Fatalf("%q accepted", name)
		}
		if mac.IsZero() {
			return
		}
		if !strings.EqualFold(base, "grub.cfg-01-"+mac.Hyphen()) {
			t.Fatalf("%q read as MAC %s", name, mac)
		}
		cfg, err := FirstStage{HTTPAddr: "10.99.0.1:8080", MAC: mac}.Render()
		if err != nil {
			t.Fatal(err)
		}
		if got := commandNames(t, FirstStage{HTTPAddr: "10.99.0.1:8080", MAC: mac}); !assert.ObjectsAreEqual(want, got) {
			t.Fatalf("%q: commands %q, want %q", name, got, want)
		}
		if !strings.Contains(string(cfg), "configfile '/grub?mac="+mac.String()+"&arch='\"${grub_cpu}\"\n") {
			t.Fatalf("%q: configfile line missing:\n%s", name, cfg)
		}
	})
}

// t0 gives a testing.TB for setup inside a fuzz target.
func t0(f *testing.F) testing.TB { return f }

// commandNames renders f and returns the names of its commands, read with
// the lexer model.
func commandNames(t testing.TB, f FirstStage) []string {
	t.Helper()
	cfg, err := f.Render()
	require.NoError(t, err)
	toks, err := lexGRUB(string(cfg))
	require.NoError(t, err)
	var names []string
	for _, c := range commands(toks) {
		names = append(names, c[0])
	}
	return names
}
