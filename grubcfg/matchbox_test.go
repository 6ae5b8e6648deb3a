package grubcfg

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/profile"
)

// matchboxForms are profiles in every form matchbox's documentation and
// examples use: Fedora CoreOS with iPXE's "--name main" initrd and the
// argument initrd=main, Flatcar with initrd=<file name>, the other
// spellings of the name option, and iPXE variables in the arguments.
func matchboxForms() []profile.Profile {
	return []profile.Profile{
		{ID: "fcos", Boot: profile.Boot{
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
		{ID: "spellings", Boot: profile.Boot{
			Kernel: "http://10.0.0.1:8080/assets/k",
			Initrd: []string{"--name=one /assets/a.img", "-n two http://10.0.0.1:8080/assets/b.img", "-nthree /assets/c.img"},
			Args:   []string{"initrd=one", "initrd=two", "initrd=three", "console=ttyS0"},
		}},
	}
}

func matchboxInventory(t testing.TB) *profile.Inventory {
	t.Helper()
	d := profile.Data{Profiles: matchboxForms()}
	for i, p := range d.Profiles {
		d.Groups = append(d.Groups, profile.Group{ID: p.ID, Profile: p.ID, Selector: map[string]string{"mac": []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"}[i]}})
	}
	inv, err := profile.New(d)
	require.NoError(t, err)
	return inv
}

// TestRenderMatchboxForms: every profile form matchbox documents renders
// for GRUB: the --name initrd loads its location, initrd=NAME arguments
// are left out (GRUB hands the initrd over itself), iPXE variables are
// the machine's values; GRUB's parser accepts the result, and Check finds
// nothing.
func TestRenderMatchboxForms(t *testing.T) {
	inv := matchboxInventory(t)
	assert.Empty(t, Check(inv))
	r := &profile.Resolver{Store: inv, BaseURL: "http://10.0.0.1:8080"}
	for mac, want := range map[string]struct{ linux, initrd []string }{
		"52:54:00:00:00:01": {
			linux: []string{"/assets/fedora-coreos/fedora-coreos-live-kernel-x86_64",
				"coreos.live.rootfs_url=http://matchbox.example.com:8080/assets/fedora-coreos/rootfs.img",
				"ignition.firstboot", "ignition.platform.id=metal",
				"ignition.config.url=http://matchbox.example.com:8080/ignition?uuid=&mac=52-54-00-00-00-01"},
			initrd: []string{"/assets/fedora-coreos/fedora-coreos-live-initramfs.x86_64.img"},
		},
		"52:54:00:00:00:02": {
			linux: []string{"/assets/flatcar/3227.2.0/flatcar_production_pxe.vmlinuz",
				"flatcar.config.url=http://matchbox.example.com:8080/ignition?uuid=&mac=52-54-00-00-00-02",
				"flatcar.first_boot=yes", "flatcar.autologin"},
			initrd: []string{"/assets/flatcar/3227.2.0/flatcar_production_pxe_image.cpio.gz"},
		},
		"52:54:00:00:00:03": {
			linux:  []string{"(http,10.0.0.1:8080)/assets/k", "console=ttyS0"},
			initrd: []string{"/assets/a.img", "(http,10.0.0.1:8080)/assets/b.img", "/assets/c.img"},
		},
	} {
		var buf bytes.Buffer
		require.NoError(t, Render(&buf, resolve(t, r, "mac="+mac), Options{}))
		requireGRUBAccepts(t, buf.String())
		toks, err := lexGRUB(buf.String())
		require.NoError(t, err)
		n := 0
		for _, c := range commands(toks) {
			switch c[0] {
			case "linux":
				assert.Equal(t, want.linux, c[1:], mac)
				n++
			case "initrd":
				assert.Equal(t, want.initrd, c[1:], mac)
				n++
			}
		}
		assert.Equal(t, 4, n, "%s: linux and initrd in both entries", mac)
	}
}

// TestCheckLoaderProblems: what GRUB cannot boot is found by Check, one
// problem per group, naming the profile's file, the group and GRUB.
func TestCheckLoaderProblems(t *testing.T) {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{
			{ID: "tls", Source: "profiles/tls.json", Boot: profile.Boot{Kernel: "https://mirror/k"}},
			{ID: "rel", Source: "profiles/rel.json", Boot: profile.Boot{Kernel: "/k", Initrd: []string{"assets/i"}}},
			{ID: "ok", Boot: profile.Boot{Kernel: "/k", Initrd: []string{"--name main /i"}}},
			{ID: "installed", IgnitionID: "x"},
		},
		Groups: []profile.Group{
			{ID: "a", Profile: "tls", Selector: map[string]string{"os": "a"}},
			{ID: "b", Profile: "rel", Selector: map[string]string{"os": "b"}},
			{ID: "c", Profile: "ok", Selector: map[string]string{"os": "c"}},
			{ID: "d", Profile: "installed", Selector: map[string]string{"os": "d"}},
		},
		Templates: map[string][]byte{"x": []byte("{}")},
	})
	require.NoError(t, err)
	problems := Check(inv)
	require.Len(t, problems, 2)
	assert.ErrorIs(t, problems[0], ErrUnsupportedURL)
	assert.Contains(t, problems[0].Error(), `profiles/tls.json: profile "tls" (group "a") cannot be booted with GRUB`)
	assert.ErrorIs(t, problems[1], ErrBadPath)
	assert.Contains(t, problems[1].Error(), `profiles/rel.json: profile "rel" (group "b")`)
}
