package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// writeData writes a data directory from name → content.
func writeData(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	return dir
}

// fcosData is a matchbox data directory as its Fedora CoreOS example
// writes it (initrd --name main, initrd=main, iPXE variables), with a
// generic template.
var fcosData = map[string]string{
	"profiles/fcos.json": `{"id": "fcos", "name": "Fedora CoreOS", "generic_id": "setup.tmpl", "boot": {
		"kernel": "/assets/fedora-coreos/kernel",
		"initrd": ["--name main /assets/fedora-coreos/initramfs.img"],
		"args": ["initrd=main", "ignition.config.url=http://matchbox.example.com:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}"]}}`,
	"groups/node1.json":  `{"id": "node1", "profile": "fcos", "selector": {"mac": "52:54:00:a1:9c:ae"}, "metadata": {"etcd_name": "node1", "pxe": {"loader": "any"}}}`,
	"generic/setup.tmpl": "name={{.etcd_name}} mac={{.mac}} foo={{.request.query.foo}}\n",
}

// TestMatchboxEndpoints: a matchbox data directory switches unchanged:
// /boot.ipxe (and .0), /ipxe, /grub, /generic and /metadata answer from
// it, and the timeline shows the iPXE stages.
func TestMatchboxEndpoints(t *testing.T) {
	data := writeData(t, fcosData)
	_, srv := testLab(t, func(c *Config) { c.Data = data })

	for _, p := range []string{"/boot.ipxe", "/boot.ipxe.0"} {
		code, body := get(t, srv.URL+p)
		require.Equal(t, 200, code, body)
		assert.True(t, strings.HasPrefix(body, "#!ipxe\n"), body)
		assert.Contains(t, body, "imgfetch --name metalboot http://127.0.0.1:8080/ipxe?uuid=${uuid}&mac=${mac:hexhyp}&")
	}
	code, body := get(t, srv.URL+"/ipxe?uuid=&mac=52-54-00-a1-9c-ae&domain=lab&hostname=&serial=&arch=x86_64")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, "\nkernel http://127.0.0.1:8080/assets/fedora-coreos/kernel initrd=main ignition.config.url=http://matchbox.example.com:8080/ignition?uuid=&mac=52-54-00-a1-9c-ae || goto metalboot_failed\n")
	assert.Contains(t, body, "\ninitrd --name main http://127.0.0.1:8080/assets/fedora-coreos/initramfs.img || goto metalboot_failed\n")

	code, body = get(t, srv.URL+"/grub?mac=52:54:00:a1:9c:ae")
	require.Equal(t, 200, code, body)
	grubCheck(t, body)
	assert.Contains(t, body, "initrd '/assets/fedora-coreos/initramfs.img'")
	assert.NotContains(t, body, "initrd=main")

	code, body = get(t, srv.URL+"/generic?mac=52:54:00:a1:9c:ae&foo=bar")
	require.Equal(t, 200, code, body)
	assert.Equal(t, "name=node1 mac=52:54:00:a1:9c:ae foo=bar\n", body)
	code, body = get(t, srv.URL+"/metadata?mac=52-54-00-a1-9c-ae&foo=bar")
	require.Equal(t, 200, code, body)
	assert.Equal(t, "ETCD_NAME=node1\nMAC=52:54:00:a1:9c:ae\nPXE_LOADER=any\nREQUEST_QUERY_FOO=bar\nREQUEST_QUERY_MAC=52:54:00:a1:9c:ae\nREQUEST_RAW_QUERY='mac=52-54-00-a1-9c-ae&foo=bar'\n", body)

	code, body = get(t, srv.URL+"/ipxe?mac=52-54-00-00-00-99")
	assert.Equal(t, 404, code, body)
	code, body = get(t, srv.URL+"/machines?format=json")
	require.Equal(t, 200, code)
	for _, stage := range []string{`"stage": "ipxe"`, `"stage": "grub"`, `"stage": "generic"`, `"stage": "metadata"`} {
		assert.Contains(t, body, stage)
	}
	assert.Contains(t, body, `"detail": "profile fcos, iPXE x86_64"`)
	assert.Contains(t, body, `/ipxe answered 404`)
}

// TestLoaderProblemsAtLoad: a profile GRUB cannot boot stops the load
// when its machines boot with GRUB (the lab's loader), naming the file
// and the loader; one only iPXE cannot boot is a warning naming both.
func TestLoaderProblemsAtLoad(t *testing.T) {
	files := map[string]string{
		"profiles/tls.json": `{"boot": {"kernel": "https://mirror.example/vmlinuz"}}`,
		"groups/tls.json":   `{"profile": "tls"}`,
	}
	empty := ""
	c := &Config{TFTP: &empty, DNS: &empty, Data: writeData(t, files)}
	s, err := c.resolve()
	require.NoError(t, err)
	_, err = newLab(s, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `profiles/tls.json: profile "tls" (group "tls") cannot be booted with GRUB`)
	assert.Contains(t, err.Error(), "no TLS")

	files = map[string]string{
		"profiles/dev.json": `{"boot": {"kernel": "(http,10.0.0.1:8080)/vmlinuz"}}`,
		"groups/dev.json":   `{"profile": "dev"}`,
	}
	c = &Config{TFTP: &empty, DNS: &empty, Data: writeData(t, files)}
	s, err = c.resolve()
	require.NoError(t, err)
	var logs bytes.Buffer
	_, err = newLab(s, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	assert.Contains(t, logs.String(), "file=profiles/dev.json profile=dev loader=iPXE")
}

// TestBootLoaderChoice: the lab's boot_loader is the default, a group's
// metadata boot_loader overrides it for its machines, and DHCP follows:
// firmware of an iPXE machine gets the iPXE binary, iPXE itself gets
// /boot.ipxe, GRUB machines GRUB's images whatever firmware they run.
func TestBootLoaderChoice(t *testing.T) {
	files := map[string]string{
		"profiles/p.json":      `{"boot": {"kernel": "/assets/vmlinuz"}}`,
		"groups/default.json":  `{"profile": "p"}`,
		"groups/ipxe.json":     `{"profile": "p", "selector": {"mac": "52:54:00:00:00:01"}, "metadata": {"boot_loader": "ipxe"}}`,
		"groups/grub.json":     `{"profile": "p", "selector": {"mac": "52:54:00:00:00:02"}, "metadata": {"boot_loader": "grub"}}`,
		"groups/unknown.json":  `{"profile": "p", "selector": {"mac": "52:54:00:00:00:03"}, "metadata": {"other": "x"}}`,
		"groups/os.json":       `{"profile": "p", "selector": {"os": "installed"}, "metadata": {"boot_loader": "ipxe"}}`,
		"groups/ipxe-os.json":  `{"profile": "p", "selector": {"mac": "52:54:00:00:00:01", "os": "installed"}}`,
		"groups/grub-os.json":  `{"profile": "p", "selector": {"mac": "52:54:00:00:00:02", "os": "installed"}}`,
		"groups/other-os.json": `{"profile": "p", "selector": {"mac": "52:54:00:00:00:03", "os": "installed"}}`,
	}
	data := writeData(t, files)
	empty := ""
	for _, tc := range []struct {
		labLoader string
		want      map[string]dhcpsrv.Loader
	}{
		{"", map[string]dhcpsrv.Loader{"52:54:00:00:00:01": dhcpsrv.LoaderIPXE, "52:54:00:00:00:02": dhcpsrv.LoaderGRUB, "52:54:00:00:00:03": dhcpsrv.LoaderGRUB, "52:54:00:00:00:09": dhcpsrv.LoaderGRUB}},
		{"ipxe", map[string]dhcpsrv.Loader{"52:54:00:00:00:01": dhcpsrv.LoaderIPXE, "52:54:00:00:00:02": dhcpsrv.LoaderGRUB, "52:54:00:00:00:03": dhcpsrv.LoaderIPXE, "52:54:00:00:00:09": dhcpsrv.LoaderIPXE}},
	} {
		l := buildLab(t, &Config{TFTP: &empty, DNS: &empty, Data: data, BootLoader: tc.labLoader}, nil)
		for mac, want := range tc.want {
			assert.Equal(t, want, l.dhcpLoader(context.Background(), hwaddr.MustParse(mac), dhcpsrv.ClientInfo{}), "lab %q, %s", tc.labLoader, mac)
		}
		// The real DHCP server with the lab's policy, answering without a socket.
		srv := &dhcpsrv.Server{ServerIP: netip.MustParseAddr("10.99.0.1"), Boot: l.bootPolicy(nil),
			Subnets: []dhcpsrv.Subnet{{Prefix: netip.MustParsePrefix("10.99.0.0/24"),
				Ranges: []dhcpsrv.Range{{From: netip.MustParseAddr("10.99.0.100"), To: netip.MustParseAddr("10.99.0.200")}}}}}
		require.NoError(t, srv.Validate())
		offer := func(mac string, ipxeClient bool) string {
			mods := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
				dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"))}
			if ipxeClient {
				mods = append(mods, dhcpv4.WithUserClass("iPXE", false))
			}
			d, err := dhcpv4.NewDiscovery(hwaddr.MustParse(mac).HardwareAddr(), mods...)
			require.NoError(t, err)
			o := srv.Reply(context.Background(), d)
			require.NotNil(t, o)
			return o.BootFileName
		}
		assert.Equal(t, "ipxe/ipxe.efi", offer("52:54:00:00:00:01", false))
		assert.Equal(t, "http://127.0.0.1:8080/boot.ipxe", offer("52:54:00:00:00:01", true))
		assert.Equal(t, "grub/x86_64-efi/core.efi", offer("52:54:00:00:00:02", true))
	}

	bad := map[string]string{
		"profiles/p.json": `{"boot": {"kernel": "/assets/vmlinuz"}}`,
		"groups/g.json":   `{"profile": "p", "metadata": {"boot_loader": "pxelinux"}}`,
	}
	c := &Config{TFTP: &empty, DNS: &empty, Data: writeData(t, bad)}
	s, err := c.resolve()
	require.NoError(t, err)
	_, err = newLab(s, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `groups/g.json: group "g": metadata boot_loader: pxelinux: want "grub" or "ipxe"`)

	c = &Config{TFTP: &empty, DNS: &empty, BootLoader: "pxelinux"}
	_, err = c.resolve()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `boot_loader: "pxelinux": want grub or ipxe`)
}

// TestMakeTFTPRootInstallsIPXE: -make-tftp-root copies Debian's iPXE
// binaries where DHCP points firmware that is to boot with iPXE.
func TestMakeTFTPRootInstallsIPXE(t *testing.T) {
	var out bytes.Buffer
	dir := t.TempDir()
	require.NoError(t, installIPXE(dir, &out))
	for _, f := range []string{"ipxe/undionly.kpxe", "ipxe/ipxe.efi"} {
		if _, err := os.Stat("/usr/lib/ipxe/" + filepath.Base(f)); err != nil {
			assert.Contains(t, out.String(), "skip "+f)
			continue
		}
		assert.FileExists(t, filepath.Join(dir, f))
		assert.Contains(t, out.String(), f+": made")
	}
}
