package profile_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/profile"
)

func TestParseInitrd(t *testing.T) {
	for in, want := range map[string]profile.Initrd{
		"/assets/initrd.img":          {Path: "/assets/initrd.img"},
		"--name main /assets/x.img":   {Name: "main", Path: "/assets/x.img"},
		"  --name\tmain  /assets/x  ": {Name: "main", Path: "/assets/x"},
		"--name=main http://h/x.img":  {Name: "main", Path: "http://h/x.img"},
		"-n main /x":                  {Name: "main", Path: "/x"},
		"-nmain /x":                   {Name: "main", Path: "/x"},
	} {
		got, err := profile.ParseInitrd(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "  ", "--name", "--name main", "--timeout 5 /x", "/x /y", "/x mode=755",
		"--name a --name b /x", "--name -x /x", "--name a/b /x", "--name .. /x", "--name= /x", "-a /x"} {
		_, err := profile.ParseInitrd(in)
		assert.ErrorIs(t, err, profile.ErrBadInitrd, "%q", in)
	}
}

func TestInitrdFileName(t *testing.T) {
	for in, want := range map[string]string{
		"/assets/flatcar_production_pxe_image.cpio.gz": "flatcar_production_pxe_image.cpio.gz",
		"--name main /assets/x.img":                    "main",
		"http://h:8080/a/b/initrd.img?x=1#f":           "initrd.img",
		"http://h:8080":                                "",
		"/assets/a%20b":                                "",
		"/":                                            "",
	} {
		in, err := profile.ParseInitrd(in)
		require.NoError(t, err)
		assert.Equal(t, want, in.FileName(), in.Path)
	}
	name, ok := profile.InitrdArg("initrd=main")
	assert.True(t, ok)
	assert.Equal(t, "main", name)
	_, ok = profile.InitrdArg("initrdmem=1,2")
	assert.False(t, ok)
}

// TestLoadInitrdForms: a malformed initrd entry is a load error naming
// the profile's file; initrd=NAME naming no initrd and an iPXE variable
// metalboot does not render are warnings.
func TestLoadInitrdForms(t *testing.T) {
	_, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Source: "profiles/p.json", Boot: profile.Boot{Kernel: "/k", Initrd: []string{"--timeout 5 /i"}}}},
		Groups:   []profile.Group{{ID: "g", Profile: "p"}},
	})
	require.ErrorIs(t, err, profile.ErrInvalid)
	assert.Contains(t, err.Error(), "profiles/p.json")
	assert.Contains(t, err.Error(), "--timeout")

	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Source: "profiles/p.json", Boot: profile.Boot{Kernel: "/k",
			Initrd: []string{"--name main /i"}, Args: []string{"initrd=main", "initrd=other", "x=${net0/gateway}"}}}},
		Groups: []profile.Group{{ID: "g", Profile: "p"}, {ID: "h", Profile: "p", Selector: map[string]string{"os": "x"}}},
	})
	require.NoError(t, err)
	var msgs []string
	for _, w := range inv.Warnings() {
		msgs = append(msgs, w.String())
	}
	assert.Contains(t, msgs, `profiles/p.json: profile "p": kernel argument "initrd=other" names no initrd of the profile (its initrds are named main): metalboot renders initrd= for each loader itself, so this argument is dropped`)
	assert.Contains(t, msgs, `profiles/p.json: profile "p": ${net0/gateway} is not a variable metalboot renders: iPXE expands it on the machine, GRUB gets it as written`)
	assert.Len(t, msgs, 2, "one warning each, not one per group: %q", msgs)
}

// TestSampleMachine: the machine a group's load-time checks render for.
func TestSampleMachine(t *testing.T) {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "p", Boot: profile.Boot{Kernel: "/k"}}},
		Groups: []profile.Group{
			{ID: "g", Profile: "p", Selector: map[string]string{"mac": "52-54-00-00-00-09", "os": "x"}, Metadata: map[string]any{"hostname": "n9.lab"}},
			{ID: "d", Profile: "p"},
		},
	})
	require.NoError(t, err)
	gs := inv.Groups()
	m := inv.SampleMachine(gs[0])
	assert.Equal(t, "52:54:00:00:00:09", m.MAC.String())
	assert.Equal(t, "n9.lab", m.Hostname)
	assert.Equal(t, map[string]string{"mac": "52:54:00:00:00:09", "os": "x"}, m.Attrs)
	assert.Same(t, inv, m.Inventory())
	m = inv.SampleMachine(gs[1])
	assert.Equal(t, profile.SampleMAC, m.MAC)
	assert.Equal(t, profile.SampleHostname, m.Hostname)
}
