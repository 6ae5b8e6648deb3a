package ipxe

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/profile"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name.golden (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file: run go test -run %s -update", t.Name())
	require.Equal(t, string(want), string(got), "output differs from %s (go test -update rewrites it)", path)
}

// hostileWords are words that mean something to iPXE's script reader.
var hostileWords = []string{"#", "#x", "||", "&&", ";", "a||b", "x#y", ":label", "-n", "--", "--name=x", `\`, `x\`, `\\`,
	"${}", "${", "}", "$", "a${b", "'", `"`, "goto", "exit", "é", "\x01"}

func TestWord(t *testing.T) {
	for _, s := range append(hostileWords, "", "plain", "initrd=main") {
		w, err := Word(s)
		require.NoError(t, err, "%q", s)
		for _, tail := range []string{"", " || goto x", "\nexit 1"} {
			cmds, err := parseIPXE("#!ipxe\necho "+w+tail+"\n", nil)
			require.NoError(t, err)
			want, err := expandModel(s, nil)
			require.NoError(t, err)
			require.NotEmpty(t, cmds, "%q", s)
			assert.Equal(t, []string{"echo", want}, cmds[0].Argv, "%q as %q, then %q", s, w, tail)
			assert.Equal(t, strings.HasPrefix(tail, " ||"), cmds[0].Next == "||", "%q", s)
		}
	}
	for _, s := range []string{"a b", "a\tb", "a\nb", "a\rb", "a\x00b", " "} {
		_, err := Word(s)
		assert.ErrorIs(t, err, ErrUnencodable, "%q", s)
	}
	for _, s := range []string{"${x}", "a${b}c", "${"} {
		_, err := Literal(s)
		if Expands(s) {
			assert.ErrorIs(t, err, ErrUnencodable, "%q", s)
		} else {
			assert.NoError(t, err, "%q", s)
		}
	}
}

// FuzzWord: a string without white space or NUL is one word, which iPXE
// reads back as the string (expanded as iPXE expands it); Literal's are
// read back exactly, whatever follows on the line.
func FuzzWord(f *testing.F) {
	for _, s := range hostileWords {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := Word(s)
		if err != nil {
			if !strings.ContainsAny(s, " \t\n\v\f\r\x00") {
				t.Fatalf("%q refused: %v", s, err)
			}
			return
		}
		want, err := expandModel(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		cmds, err := parseIPXE("#!ipxe\necho "+w+"\necho "+w+" || exit 1\n", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cmds) != 3 || !assert.ObjectsAreEqual([]string{"echo", want}, cmds[0].Argv) ||
			!assert.ObjectsAreEqual([]string{"echo", want}, cmds[1].Argv) || cmds[1].Next != "||" ||
			!assert.ObjectsAreEqual([]string{"exit", "1"}, cmds[2].Argv) {
			t.Fatalf("%q as %q: %+v", s, w, cmds)
		}
		if l, err := Literal(s); err == nil {
			if l != w || want != s {
				t.Fatalf("%q: Literal %q reads back as %q", s, l, want)
			}
		} else if !Expands(s) {
			t.Fatalf("%q: Literal: %v", s, err)
		}
	})
}

// matchboxForms are profiles in the forms matchbox's documentation and
// examples use, plus one without any initrd= argument (which UEFI iPXE
// needs) and the other spellings of the name option.
func matchboxForms() []profile.Profile {
	return []profile.Profile{
		{ID: "fcos", Name: "Fedora CoreOS", Boot: profile.Boot{
			Kernel: "/assets/fedora-coreos/fedora-coreos-live-kernel-x86_64",
			Initrd: []string{"--name main /assets/fedora-coreos/fedora-coreos-live-initramfs.x86_64.img"},
			Args: []string{"initrd=main", "coreos.live.rootfs_url=http://matchbox.example.com:8080/assets/fedora-coreos/rootfs.img",
				"ignition.firstboot", "ignition.platform.id=metal",
				"ignition.config.url=http://matchbox.example.com:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}"},
		}},
		{ID: "flatcar", Boot: profile.Boot{
			Kernel: "/assets/flatcar/3227.2.0/flatcar_production_pxe.vmlinuz",
			Initrd: []string{"/assets/flatcar/3227.2.0/flatcar_production_pxe_image.cpio.gz"},
			Args: []string{"initrd=flatcar_production_pxe_image.cpio.gz",
				"flatcar.config.url=http://matchbox.example.com:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}",
				"flatcar.first_boot=yes", "flatcar.autologin"},
		}},
		{ID: "plain", Boot: profile.Boot{
			Kernel: "http://10.0.0.1:8080/assets/vmlinuz",
			Initrd: []string{"/assets/initrd.cpio", "https://mirror.example/b/initrd.cpio?v=2", "/assets/x%20y"},
			Args:   []string{"console=ttyS0", "ignition.config.url={{.BaseURL}}/ignition?mac={{.MAC}}"},
		}},
		{ID: "spellings", Boot: profile.Boot{
			Kernel: "/assets/k",
			Initrd: []string{"--name=one /assets/a.img", "-n two /assets/b.img", "/assets/one"},
			Args:   []string{"console=ttyS0", "initrd=two", "initrd=one", "quiet"},
		}},
	}
}

var formMACs = []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03", "52:54:00:00:00:04"}

func matchboxInventory(t testing.TB) *profile.Inventory {
	t.Helper()
	d := profile.Data{Profiles: matchboxForms()}
	for i, p := range d.Profiles {
		d.Groups = append(d.Groups, profile.Group{ID: p.ID, Profile: p.ID, Selector: map[string]string{"mac": formMACs[i]}})
	}
	inv, err := profile.New(d)
	require.NoError(t, err)
	return inv
}

func resolve(t testing.TB, r *profile.Resolver, query string) *profile.Machine {
	t.Helper()
	attrs, err := profile.ParseQuery(query)
	require.NoError(t, err)
	m, err := r.Resolve(context.Background(), attrs, query)
	require.NoError(t, err)
	return m
}

// TestRenderMatchboxForms: every profile form matchbox documents renders
// for iPXE: each initrd loaded by name, exactly one initrd=NAME argument
// per initrd where the profile had its own (or first), iPXE variables as
// the machine's values, every command jumping to the failure label.
// The scripts are golden files; Check finds nothing.
func TestRenderMatchboxForms(t *testing.T) {
	inv := matchboxInventory(t)
	assert.Empty(t, Check(inv))
	r := &profile.Resolver{Store: inv, BaseURL: "http://10.0.0.1:8080"}
	want := map[string][]string{
		"fcos": {
			`["kernel" "http://10.0.0.1:8080/assets/fedora-coreos/fedora-coreos-live-kernel-x86_64" "initrd=main" "coreos.live.rootfs_url=http://matchbox.example.com:8080/assets/fedora-coreos/rootfs.img" "ignition.firstboot" "ignition.platform.id=metal" "ignition.config.url=http://matchbox.example.com:8080/ignition?uuid=&mac=52-54-00-00-00-01"] ||`,
			`["initrd" "--name" "main" "http://10.0.0.1:8080/assets/fedora-coreos/fedora-coreos-live-initramfs.x86_64.img"] ||`,
		},
		"flatcar": {
			`["kernel" "http://10.0.0.1:8080/assets/flatcar/3227.2.0/flatcar_production_pxe.vmlinuz" "initrd=flatcar_production_pxe_image.cpio.gz" "flatcar.config.url=http://matchbox.example.com:8080/ignition?uuid=&mac=52-54-00-00-00-02" "flatcar.first_boot=yes" "flatcar.autologin"] ||`,
			`["initrd" "--name" "flatcar_production_pxe_image.cpio.gz" "http://10.0.0.1:8080/assets/flatcar/3227.2.0/flatcar_production_pxe_image.cpio.gz"] ||`,
		},
		"plain": {
			`["kernel" "http://10.0.0.1:8080/assets/vmlinuz" "initrd=initrd.cpio" "initrd=initrd1" "initrd=initrd2" "console=ttyS0" "ignition.config.url=http://10.0.0.1:8080/ignition?mac=52:54:00:00:00:03"] ||`,
			`["initrd" "--name" "initrd.cpio" "http://10.0.0.1:8080/assets/initrd.cpio"] ||`,
			`["initrd" "--name" "initrd1" "https://mirror.example/b/initrd.cpio?v=2"] ||`,
			`["initrd" "--name" "initrd2" "http://10.0.0.1:8080/assets/x%20y"] ||`,
		},
		"spellings": {
			`["kernel" "http://10.0.0.1:8080/assets/k" "console=ttyS0" "initrd=one" "initrd=two" "initrd=initrd2" "quiet"] ||`,
			`["initrd" "--name" "one" "http://10.0.0.1:8080/assets/a.img"] ||`,
			`["initrd" "--name" "two" "http://10.0.0.1:8080/assets/b.img"] ||`,
			`["initrd" "--name" "initrd2" "http://10.0.0.1:8080/assets/one"] ||`,
		},
	}
	for i, p := range matchboxForms() {
		var buf bytes.Buffer
		m := resolve(t, r, "mac="+formMACs[i])
		require.NoError(t, Render(&buf, m))
		golden(t, p.ID, buf.Bytes())
		var loads []string
		for _, c := range words(t, buf.String(), nil) {
			if strings.HasPrefix(c, `["kernel"`) || strings.HasPrefix(c, `["initrd"`) {
				loads = append(loads, c)
			}
		}
		assert.Equal(t, want[p.ID], loads, p.ID)
		assert.Equal(t, []string{
			`["echo" "metalboot:" "machine" "` + formMACs[i] + `," "group" "` + p.ID + `," "profile" "` + p.ID + `"]`,
		}, words(t, buf.String(), nil)[:1])
		tail := words(t, buf.String(), nil)
		assert.Equal(t, []string{`["boot"] ||`, `["goto" "metalboot_failed"]`, `:metalboot_failed []`}, tail[len(tail)-5:len(tail)-2], p.ID)
		assert.Equal(t, `["exit" "1"]`, tail[len(tail)-1], p.ID)
	}
}

// TestRenderHostileProfile renders a profile whose own strings mean
// something to iPXE's script reader: each reaches iPXE as the word it is,
// in its command, and no other command runs.
func TestRenderHostileProfile(t *testing.T) {
	args := []string{"#comment", "||", "&&", ";", "reboot", "a||b", `x\`, ":label", "-n", "--", "exit", "x=${net0/gateway}"}
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "evil", Name: "evil || reboot", Boot: profile.Boot{
			Kernel: `http://10.0.0.1:8080/k#x\`,
			Initrd: []string{"--name a||b /i#j", `/x\`},
			Args:   args,
		}}},
		Groups: []profile.Group{{ID: "g", Profile: "evil"}},
	})
	assert.ErrorIs(t, err, profile.ErrInvalid, "a||b is not an initrd name: a load error")
	assert.Nil(t, inv)

	inv, err = profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "evil", Name: "evil || reboot", Boot: profile.Boot{
			Kernel: `http://10.0.0.1:8080/k#x\`, Initrd: []string{"/i#j", `/x\`}, Args: args}}},
		Groups: []profile.Group{{ID: "g", Profile: "evil"}},
	})
	require.NoError(t, err)
	m := resolve(t, &profile.Resolver{Store: inv}, "mac=52:54:00:00:00:01")
	b, err := AppendScript(nil, m)
	require.NoError(t, err)
	settings := map[string]string{"net0/gateway": "10.0.0.9"}
	got := words(t, string(b), settings)
	wantArgs := []string{"kernel", `http://10.0.0.1:8080/k#x\`, "initrd=i", "initrd=initrd1",
		"#comment", "||", "&&", ";", "reboot", "a||b", `x\`, ":label", "-n", "--", "exit", "x=10.0.0.9"}
	cmds, err := parseIPXE(string(b), settings)
	require.NoError(t, err)
	var names []string
	for _, c := range cmds {
		if len(c.Argv) > 0 {
			names = append(names, c.Argv[0])
		}
		if len(c.Argv) > 0 && c.Argv[0] == "kernel" {
			assert.Equal(t, wantArgs, c.Argv)
		}
	}
	assert.Equal(t, []string{"echo", "echo", "kernel", "goto", "echo", "initrd", "goto", "echo", "initrd", "goto", "boot", "goto", "echo", "exit"}, names, "%q", got)
}

// TestBuildInitrdNames: names given with --name win; file names fill in
// where free (compared without case, as iPXE and the EFI stub do).
func TestBuildInitrdNames(t *testing.T) {
	build := func(initrd []string, args ...string) (Script, error) {
		inv, err := profile.New(profile.Data{
			Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k", Initrd: initrd, Args: args}}},
			Groups:   []profile.Group{{ID: "g", Profile: "p"}},
		})
		require.NoError(t, err)
		return Build(resolve(t, &profile.Resolver{Store: inv}, "mac=52:54:00:00:00:01"))
	}
	s, err := build([]string{"/a/Main", "--name main /b", "/c/main", "/d/"}, "initrd=main", "x")
	require.NoError(t, err)
	var names []string
	for _, in := range s.Initrds {
		names = append(names, in.Name)
	}
	assert.Equal(t, []string{"initrd0", "main", "initrd2", "initrd3"}, names)
	assert.Equal(t, []string{"initrd=initrd0", "initrd=main", "initrd=initrd2", "initrd=initrd3", "x"}, s.Args)
	assert.Equal(t, "/k", s.Kernel, "no BaseURL: relative to the script's URL, as matchbox writes it")

	_, err = build([]string{"--name main /a", "--name MAIN /b"})
	assert.ErrorIs(t, err, ErrBadInitrdName)
	s, err = build(nil, "initrd=stale", "x")
	require.NoError(t, err)
	assert.Equal(t, []string{"x"}, s.Args)
}

// TestCheckLoaderProblems: what iPXE cannot boot is found by Check, one
// problem per group, naming the profile's file, the group and iPXE;
// https is fine for iPXE (GRUB's Check reports it).
func TestCheckLoaderProblems(t *testing.T) {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{
			{ID: "dev", Source: "profiles/dev.json", Boot: profile.Boot{Kernel: "(hd0,gpt2)/vmlinuz"}},
			{ID: "rel", Source: "profiles/rel.json", Boot: profile.Boot{Kernel: "/k", Initrd: []string{"assets/i"}}},
			{ID: "dup", Source: "profiles/dup.json", Boot: profile.Boot{Kernel: "/k", Initrd: []string{"--name a /i", "--name A /j"}}},
			{ID: "tls", Boot: profile.Boot{Kernel: "https://mirror/k"}},
			{ID: "installed", IgnitionID: "x"},
		},
		Groups: []profile.Group{
			{ID: "a", Profile: "dev", Selector: map[string]string{"os": "a"}},
			{ID: "b", Profile: "rel", Selector: map[string]string{"os": "b"}},
			{ID: "c", Profile: "dup", Selector: map[string]string{"os": "c"}},
			{ID: "d", Profile: "tls", Selector: map[string]string{"os": "d"}},
			{ID: "e", Profile: "installed", Selector: map[string]string{"os": "e"}},
		},
		Templates: map[string][]byte{"x": []byte("{}")},
	})
	require.NoError(t, err)
	problems := Check(inv)
	require.Len(t, problems, 3)
	assert.ErrorIs(t, problems[0], ErrBadLocation)
	assert.Contains(t, problems[0].Error(), `profiles/dev.json: profile "dev" (group "a") cannot be booted with iPXE`)
	assert.ErrorIs(t, problems[1], ErrBadLocation)
	assert.ErrorIs(t, problems[2], ErrBadInitrdName)
}

// hostileInventory boots with a request label as a whole kernel argument
// and inside the initrd's location, and the hostname in an argument.
func hostileInventory(t testing.TB) *profile.Inventory {
	t.Helper()
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k",
			Initrd: []string{"--name main /i/{{.Labels.extra}}"},
			Args:   []string{"console=ttyS0", "{{.Labels.extra}}", "h={{.Hostname}}", "last=1"}}}},
		Groups: []profile.Group{{ID: "g", Profile: "p", Selector: map[string]string{"extra": "quiet"}}},
	})
	require.NoError(t, err)
	return inv
}

var hostileValues = []string{"x init=/bin/sh", "||", "&&", ";", "#", "#x", "a||b", `x\`, "${net0/ip}", "${", "}", "$", "--",
	"x\nreboot", "x\x00", "é", "Xmb0zeY", ":l", "-n"}

// FuzzRenderHostileIPXE renders hostile hostnames and request labels
// (reaching the renderer unvalidated, as from a library user's
// FactSource) into an iPXE script: the render fails with ErrBadValue, or
// iPXE's reader finds exactly the benign script's commands, the kernel
// with exactly the benign arguments, each value in place.
func FuzzRenderHostileIPXE(f *testing.F) {
	for _, s := range hostileValues {
		f.Add(s, "quiet")
		f.Add("n1", s)
	}
	inv := hostileInventory(f)
	r := &profile.Resolver{Store: inv, BaseURL: "http://10.0.0.1:8080"}
	m0, err := r.Resolve(context.Background(), map[string]string{"mac": "52:54:00:00:00:01", "extra": "quiet"}, "")
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, hostname, extra string) {
		m := *m0
		m.Hostname = hostname
		m.Attrs = map[string]string{"mac": "52:54:00:00:00:01", "extra": extra}
		b, err := AppendScript(nil, &m)
		if err != nil {
			if !errors.Is(err, profile.ErrBadValue) {
				t.Fatalf("%q %q: %v", hostname, extra, err)
			}
			return
		}
		cmds, err := parseIPXE(string(b), map[string]string{"net0/ip": "10.0.0.9"})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cmds {
			if len(c.Argv) > 0 {
				names = append(names, c.Argv[0])
			}
			switch {
			case len(c.Argv) > 0 && c.Argv[0] == "kernel":
				want := []string{"kernel", "http://10.0.0.1:8080/k", "initrd=main", "console=ttyS0", extra, "h=" + hostname, "last=1"}
				if extra == "" {
					want = []string{"kernel", "http://10.0.0.1:8080/k", "initrd=main", "console=ttyS0", "h=" + hostname, "last=1"}
				}
				if !assert.ObjectsAreEqual(want, c.Argv) || c.Next != "||" {
					t.Fatalf("%q %q: kernel %q %s, want %q", hostname, extra, c.Argv, c.Next, want)
				}
			case len(c.Argv) > 0 && c.Argv[0] == "initrd":
				want := []string{"initrd", "--name", "main", "http://10.0.0.1:8080/i/" + extra}
				if !assert.ObjectsAreEqual(want, c.Argv) || c.Next != "||" {
					t.Fatalf("%q %q: initrd %q, want %q", hostname, extra, c.Argv, want)
				}
			}
		}
		want := []string{"echo", "echo", "kernel", "goto", "echo", "initrd", "goto", "boot", "goto", "echo", "exit"}
		if !assert.ObjectsAreEqual(want, names) {
			t.Fatalf("%q %q: commands %q, want %q:\n%s", hostname, extra, names, want, b)
		}
	})
}
