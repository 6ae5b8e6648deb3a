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
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/grubcfg"
)

var sbData = map[string]string{
	"profiles/p.json":     `{"name": "signed", "boot": {"kernel": "/assets/vmlinuz", "initrd": ["/assets/initrd.cpio"], "args": ["metalboot.ignition={{.BaseURL}}/ignition?mac={{.MAC}}"]}}`,
	"groups/default.json": `{"profile": "p"}`,
	"groups/on.json":      `{"profile": "p", "selector": {"mac": "52:54:00:00:00:01"}, "metadata": {"secure_boot": true}}`,
	"groups/off.json":     `{"profile": "p", "selector": {"mac": "52:54:00:00:00:02"}, "metadata": {"secure_boot": false}}`,
	"groups/ipxe.json":    `{"profile": "p", "selector": {"mac": "52:54:00:00:00:03"}, "metadata": {"boot_loader": "ipxe"}}`,
}

// TestSecureBootChoice: the lab's secure_boot is the default, a group's
// metadata secure_boot overrides it, iPXE machines keep iPXE, and DHCP
// follows: UEFI x64 Secure Boot machines get shim, BIOS machines GRUB's
// image whatever the setting.
func TestSecureBootChoice(t *testing.T) {
	data := writeData(t, sbData)
	empty := ""
	for _, labSB := range []bool{false, true} {
		l := buildLab(t, &Config{TFTP: &empty, DNS: &empty, Data: data, SecureBoot: labSB}, nil)
		def := dhcpsrv.LoaderGRUB
		if labSB {
			def = dhcpsrv.LoaderShim
		}
		for mac, want := range map[string]dhcpsrv.Loader{
			"52:54:00:00:00:01": dhcpsrv.LoaderShim, "52:54:00:00:00:02": dhcpsrv.LoaderGRUB,
			"52:54:00:00:00:03": dhcpsrv.LoaderIPXE, "52:54:00:00:00:09": def,
		} {
			assert.Equal(t, want, l.dhcpLoader(context.Background(), hwaddr.MustParse(mac), dhcpsrv.ClientInfo{}), "lab secure_boot %v, %s", labSB, mac)
		}
		srv := &dhcpsrv.Server{ServerIP: netip.MustParseAddr("10.99.0.1"), Boot: l.bootPolicy(nil),
			Subnets: []dhcpsrv.Subnet{{Prefix: netip.MustParsePrefix("10.99.0.0/24"),
				Ranges: []dhcpsrv.Range{{From: netip.MustParseAddr("10.99.0.100"), To: netip.MustParseAddr("10.99.0.200")}}}}}
		require.NoError(t, srv.Validate())
		offer := func(mac string, arch iana.Arch, vendor string) string {
			d, err := dhcpv4.NewDiscovery(hwaddr.MustParse(mac).HardwareAddr(),
				dhcpv4.WithOption(dhcpv4.OptClientArch(arch)), dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendor)))
			require.NoError(t, err)
			o := srv.Reply(context.Background(), d)
			require.NotNil(t, o)
			return o.BootFileName
		}
		efi, bios := "PXEClient:Arch:00007:UNDI:003016", "PXEClient:Arch:00000:UNDI:002001"
		assert.Equal(t, "shimx64.efi", offer("52:54:00:00:00:01", iana.EFI_X86_64, efi))
		assert.Equal(t, "grub/i386-pc/core.0", offer("52:54:00:00:00:01", iana.INTEL_X86PC, bios), "BIOS has no Secure Boot")
		assert.Equal(t, "grub/x86_64-efi/core.efi", offer("52:54:00:00:00:02", iana.EFI_X86_64, efi))
		wantDefault := "grub/x86_64-efi/core.efi"
		if labSB {
			wantDefault = "shimx64.efi"
		}
		assert.Equal(t, wantDefault, offer("52:54:00:00:00:09", iana.EFI_X86_64, efi))
	}
}

// TestSecureBootProblemsAtLoad: what a Secure Boot machine cannot boot
// stops the load with file and reason; the same profile on a machine
// without Secure Boot is fine.
func TestSecureBootProblemsAtLoad(t *testing.T) {
	empty := ""
	load := func(labSB bool, files map[string]string) error {
		c := &Config{TFTP: &empty, DNS: &empty, Data: writeData(t, files), SecureBoot: labSB}
		s, err := c.resolve()
		require.NoError(t, err)
		_, err = newLab(s, slog.New(slog.DiscardHandler))
		return err
	}
	remote := map[string]string{
		"profiles/far.json": `{"boot": {"kernel": "http://mirror.example/vmlinuz"}}`,
		"groups/g.json":     `{"profile": "far", "selector": {"mac": "52:54:00:00:00:01"}, "metadata": {"secure_boot": true}}`,
	}
	err := load(false, remote)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `profiles/far.json: profile "far" (group "g") cannot be booted with GRUB over TFTP`)
	assert.Contains(t, err.Error(), "needs GRUB's http module")
	assert.Contains(t, err.Error(), "its machines boot with Secure Boot")

	remote["groups/g.json"] = `{"profile": "far", "selector": {"mac": "52:54:00:00:00:01"}}`
	require.NoError(t, load(false, remote), "no Secure Boot: http is fine")
	require.Error(t, load(true, remote), "the lab's secure_boot")

	err = load(false, map[string]string{
		"profiles/p.json": `{"boot": {"kernel": "/assets/vmlinuz"}}`,
		"groups/g.json":   `{"profile": "p", "metadata": {"secure_boot": "yes"}}`,
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `groups/g.json: group "g": metadata secure_boot: yes: want true or false`)

	err = load(false, map[string]string{
		"profiles/p.json": `{"boot": {"kernel": "/assets/vmlinuz"}}`,
		"groups/g.json":   `{"profile": "p", "metadata": {"secure_boot": true, "boot_loader": "ipxe"}}`,
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "iPXE's binaries here are not signed")
	require.NoError(t, load(true, sbData), "the lab's secure_boot leaves iPXE groups on iPXE")
}

// TestSecureBootTFTP: labserver's TFTP answers what the signed GRUB asks
// for: the first stage with its TFTP fallback, the per-machine
// configuration by MAC with kernel and initrd over TFTP, and those files
// from the assets directory; the timeline names the config, kernel and
// initrd. Fetched with a real TFTP client (pin/tftp) on loopback.
func TestSecureBootTFTP(t *testing.T) {
	assets := t.TempDir()
	kernel := bytes.Repeat([]byte("signed kernel "), 5000)
	require.NoError(t, os.WriteFile(filepath.Join(assets, "vmlinuz"), kernel, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(assets, "initrd.cpio"), []byte("initrd"), 0o644))
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "grubx64.efi"), []byte("signed grub"), 0o644))
	tftpAddr, empty := "127.0.0.1:0", ""
	l := buildLab(t, &Config{TFTP: &tftpAddr, DNS: &empty, Data: writeData(t, sbData), Assets: assets, TFTPRoot: root}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); l.wg.Wait() })
	l.errc = make(chan error, 4)
	require.NoError(t, l.startTFTP(ctx))
	c, err := tftp.NewClient(l.addrs["tftp"])
	require.NoError(t, err)
	c.SetTimeout(2 * time.Second)
	fetch := func(name string) string {
		t.Helper()
		wt, err := c.Receive(name, "octet")
		require.NoError(t, err, name)
		var b bytes.Buffer
		_, err = wt.WriteTo(&b)
		require.NoError(t, err, name)
		return b.String()
	}
	first := fetch("grub/grub.cfg")
	grubCheck(t, first)
	assert.Contains(t, first, `configfile "(tftp)/grub?mac=${net_default_mac}&arch=${grub_cpu}"`)
	assert.Contains(t, fetch("grub/grub.cfg-01-52-54-00-00-00-01"), `configfile '(tftp)/grub?mac=52:54:00:00:00:01&arch='"${grub_cpu}"`)

	l.timeline.learn(hwaddr.MustParse("52:54:00:00:00:01"), netip.MustParseAddr("127.0.0.1"))
	cfg := fetch("/grub?mac=52:54:00:00:00:01&arch=x86_64")
	grubCheck(t, cfg)
	assert.Contains(t, cfg, "\n  linux '(tftp)/assets/vmlinuz' 'metalboot.ignition=http://127.0.0.1:8080/ignition?mac=52:54:00:00:00:01'")
	assert.Contains(t, cfg, "\n  initrd '(tftp)/assets/initrd.cpio'\n")
	assert.Equal(t, string(kernel), fetch("assets/vmlinuz"))
	assert.Equal(t, "initrd", fetch("assets/initrd.cpio"))
	assert.Equal(t, "signed grub", fetch("grubx64.efi"))
	assert.True(t, strings.HasPrefix(fetch("grub?mac=zz"), "echo 'metalboot: /grub answered 400 Bad Request: "),
		"a malformed MAC: GRUB prints why")

	// OnTransfer runs once the server has the last acknowledgement, which
	// may be after the client returned.
	stages := func() map[string]bool {
		st := map[string]bool{}
		for _, r := range l.timeline.snapshot() {
			if r.MAC == "52:54:00:00:00:01" {
				for _, e := range r.Events {
					st[e.Stage] = true
				}
			}
		}
		return st
	}
	assert.Eventually(t, func() bool {
		st := stages()
		return st[stageGrub] && st[stageKernel] && st[stageInitrd] && st[stageTFTP]
	}, 5*time.Second, 20*time.Millisecond, "timeline stages: %v", stages())
}

// TestMakeTFTPRootInstallsSecureBoot: -make-tftp-root copies Debian's
// signed chain and says which files it used (or what to install).
func TestMakeTFTPRootInstallsSecureBoot(t *testing.T) {
	var out bytes.Buffer
	dir := t.TempDir()
	require.NoError(t, installSecureBoot(dir, &out))
	if _, err := os.Stat(grubcfg.DebianSignedGRUB); err != nil {
		assert.Contains(t, out.String(), "skip Secure Boot chain")
		assert.Contains(t, out.String(), "apt-get install shim-signed grub-efi-amd64-signed")
		return
	}
	for name, from := range map[string]string{"shimx64.efi": grubcfg.DebianShim, "grubx64.efi": grubcfg.DebianSignedGRUB, "mmx64.efi": grubcfg.DebianMokManager} {
		assert.Contains(t, out.String(), "Secure Boot: "+filepath.Join(dir, name)+" from "+from)
		want, err := os.ReadFile(from)
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, got), name)
	}
}
