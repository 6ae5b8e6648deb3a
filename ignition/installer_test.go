package ignition

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAgrBiaSvGO9QZU/pD75++z0V6EwNHgcne8hDRJhVTis debug@demo.lab"

func flatcarInstaller() Installer {
	return Installer{
		Disk:               "/dev/sdb",
		Channel:            "stable",
		Version:            "4081.2.0",
		ImageBaseURL:       "http://172.22.10.2:8080/assets/flatcar",
		InstalledConfigURL: "http://172.22.10.2:8080/ignition?mac=00:30:48:fb:e2:44&os=installed",
		SSHKeys:            []string{testKey},
	}
}

func fcosInstaller() Installer {
	return Installer{
		Distro:             FCOS,
		Disk:               "/dev/nvme0n1",
		Stream:             "stable",
		InstalledConfigURL: "http://172.22.10.2:8080/ignition?mac=00:23:32:2f:40:3c&os=installed",
		SSHKeys:            []string{testKey},
	}
}

func TestInstallerFlatcar(t *testing.T) {
	in := flatcarInstaller()
	raw, err := in.JSON()
	require.NoError(t, err)
	ignitionValidate(t, raw)
	c := decodeConfig(t, raw)
	assert.Equal(t, DefaultVersion, c.Ignition.Version)

	script, mode, ok := c.file(t, InstallerPath)
	require.True(t, ok, "no %s in %s", InstallerPath, raw)
	assert.Equal(t, 0o500, mode)
	bashSyntax(t, script)
	assert.Contains(t, script, "\nflatcar-install -d /dev/sdb -C stable -V 4081.2.0 -i /tmp/ignition.json -b http://172.22.10.2:8080/assets/flatcar\n")
	assert.Contains(t, script, " -o /tmp/ignition.json 'http://172.22.10.2:8080/ignition?mac=00:30:48:fb:e2:44&os=installed'\n")
	assert.True(t, strings.HasPrefix(script, "#!/bin/bash\n"))
	assert.True(t, strings.HasSuffix(script, "systemctl reboot\n"))
	// The installed config is fetched before flatcar-install runs.
	assert.Less(t, strings.Index(script, "curl "), strings.Index(script, "flatcar-install "))

	unit, enabled, ok := c.unit(InstallerUnit)
	require.True(t, ok)
	assert.True(t, enabled)
	for _, line := range []string{"Requires=network-online.target", "After=network-online.target", "ExecStart=/opt/installer", "WantedBy=multi-user.target", "Type=oneshot"} {
		assert.Contains(t, unit, line+"\n")
	}
	require.Equal(t, []string{DebugUser}, c.users())
	assert.Equal(t, []string{testKey}, c.Passwd.Users[0].Keys)
	assert.Equal(t, []string{"sudo", "docker"}, c.Passwd.Users[0].Groups)
}

func TestInstallerFCOS(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(*Installer)
		want string
	}{
		"stream": {func(*Installer) {}, "coreos-installer install /dev/nvme0n1 --ignition-url 'http://172.22.10.2:8080/ignition?mac=00:23:32:2f:40:3c&os=installed' --insecure-ignition --stream stable\n"},
		"image url": {func(in *Installer) {
			in.Stream, in.ImageURL, in.InsecureImage = "", "http://172.22.10.2:8080/assets/fcos/metal.x86_64.raw.xz", true
		}, "coreos-installer install /dev/nvme0n1 --ignition-url 'http://172.22.10.2:8080/ignition?mac=00:23:32:2f:40:3c&os=installed' --insecure-ignition --image-url http://172.22.10.2:8080/assets/fcos/metal.x86_64.raw.xz --insecure\n"},
		"https config, live image": {func(in *Installer) {
			in.Stream, in.InstalledConfigURL = "", "https://deploy.lab/ignition?mac=00:23:32:2f:40:3c&os=installed"
		}, "coreos-installer install /dev/nvme0n1 --ignition-url 'https://deploy.lab/ignition?mac=00:23:32:2f:40:3c&os=installed'\n"},
	} {
		t.Run(name, func(t *testing.T) {
			in := fcosInstaller()
			tc.mod(&in)
			raw, err := in.JSON()
			require.NoError(t, err)
			ignitionValidate(t, raw)
			c := decodeConfig(t, raw)
			script, _, ok := c.file(t, InstallerPath)
			require.True(t, ok)
			bashSyntax(t, script)
			assert.Contains(t, script, "\n"+tc.want)
			assert.NotContains(t, script, "flatcar-install")
			require.Len(t, c.Passwd.Users, 1)
			assert.Equal(t, []string{"wheel"}, c.Passwd.Users[0].Groups)
		})
	}
}

func TestInstallerVersions(t *testing.T) {
	for _, v := range []string{"3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0"} {
		t.Run(v, func(t *testing.T) {
			in := flatcarInstaller()
			in.SpecVersion = v
			in.Units = []Unit{{Name: "hello.service", Contents: "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n", Enabled: true}}
			in.Users = []User{{Name: "ops", SSHKeys: []string{testKey}}}
			raw, err := in.JSON()
			require.NoError(t, err)
			ignitionValidate(t, raw)
			c := decodeConfig(t, raw)
			assert.Equal(t, v, c.Ignition.Version)
			assert.Equal(t, []string{DebugUser, "ops"}, c.users())
			_, enabled, ok := c.unit("hello.service")
			assert.True(t, ok && enabled)
		})
	}
	in := flatcarInstaller()
	in.SpecVersion = "2.3.0"
	_, err := in.JSON()
	assert.ErrorIs(t, err, ErrUnsupportedVersion)
}

func TestMarshalRejectsFieldsOfNewerSpecs(t *testing.T) {
	in := Installed{Hostname: "mp.lab"}
	cfg, err := in.Config()
	require.NoError(t, err)
	cfg.KernelArguments.ShouldExist = append(cfg.KernelArguments.ShouldExist, "quiet") // new in 3.3.0
	_, err = Marshal(cfg, "3.2.0")
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.Contains(t, err.Error(), "kernelArguments")
	raw, err := Marshal(cfg, "3.3.0")
	require.NoError(t, err)
	ignitionValidate(t, raw)
}

func TestInstalled(t *testing.T) {
	in := Installed{Hostname: "smpc.lab", SSHKeys: []string{testKey}}
	raw, err := in.JSON()
	require.NoError(t, err)
	ignitionValidate(t, raw)
	c := decodeConfig(t, raw)
	host, mode, ok := c.file(t, "/etc/hostname")
	require.True(t, ok)
	assert.Equal(t, "smpc.lab\n", host)
	assert.Equal(t, 0o644, mode)
	_, _, ok = c.file(t, InstallerPath)
	assert.False(t, ok, "installed config must not carry the installer")
	_, _, ok = c.unit(InstallerUnit)
	assert.False(t, ok)
	assert.Equal(t, []string{DebugUser}, c.users())
}

func TestInstallerErrors(t *testing.T) {
	for name, mod := range map[string]func(*Installer){
		"no disk":            func(in *Installer) { in.Disk = "" },
		"disk not in /dev":   func(in *Installer) { in.Disk = "sda" },
		"newline in version": func(in *Installer) { in.Version = "1\nreboot" },
		"bad url":            func(in *Installer) { in.ImageBaseURL = "ftp://x/y" },
		"fcos field":         func(in *Installer) { in.Stream = "stable" },
		"unknown distro":     func(in *Installer) { in.Distro = "gentoo" },
		"user without name":  func(in *Installer) { in.Users = []User{{SSHKeys: []string{testKey}}} },
		"newline in key":     func(in *Installer) { in.SSHKeys = []string{"ssh-rsa A\nssh-rsa B"} },
		"newline in arg":     func(in *Installer) { in.ExtraArgs = []string{"\n"} },
	} {
		t.Run(name, func(t *testing.T) {
			in := flatcarInstaller()
			mod(&in)
			_, err := in.JSON()
			assert.ErrorIs(t, err, ErrBadInstaller)
		})
	}
	in := fcosInstaller()
	in.ImageURL = "http://x/img.raw.xz"
	_, err := in.JSON()
	assert.ErrorIs(t, err, ErrBadInstaller, "stream and image URL together")
}

// TestShellQuoting runs bash on quoted words and checks each arrives as
// one unchanged argument.
func TestShellQuoting(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	words := []string{"plain", "", "a b", "it's", `"$HOME"`, "$(reboot)", "`id`", "a;b&c|d", "*", "~", "x=1", "--opt=va lue", "\\", "ünï"}
	out, err := exec.Command(bash, "-c", "printf '%s\\0' "+shellJoin(words...)).Output()
	require.NoError(t, err)
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	assert.Equal(t, words, got)
}
