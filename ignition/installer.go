package ignition

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/vincent-petithory/dataurl"
)

// Distro names the operating system an Installer installs.
type Distro string

// Supported distributions.
const (
	// Flatcar installs with flatcar-install (Flatcar Container Linux).
	Flatcar Distro = "flatcar"
	// FCOS installs with coreos-installer (Fedora CoreOS).
	FCOS Distro = "fcos"
)

// ErrBadInstaller is wrapped by every error about an Installer or Installed
// value that cannot become a config.
var ErrBadInstaller = errors.New("bad installer settings")

// Paths and names of what the installer config writes.
const (
	// InstallerPath is where the install script is written.
	InstallerPath = "/opt/installer"
	// InstallerUnit is the systemd unit that runs the script once the
	// network is online.
	InstallerUnit = "installer.service"
	// DebugUser is the user that receives the SSH keys of Installer.SSHKeys
	// and Installed.SSHKeys.
	DebugUser = "debug"
)

// User is an extra account in a generated config.
type User struct {
	// Name is the login name; required.
	Name string
	// SSHKeys are authorized_keys lines.
	SSHKeys []string
	// Groups are supplementary groups; they must exist on the installed
	// distribution (Flatcar has sudo and docker, Fedora CoreOS has wheel).
	Groups []string
	// PasswordHash is a crypt(3) hash; empty means no password login.
	PasswordHash string
}

// Unit is an extra systemd unit in a generated config.
type Unit struct {
	// Name is the unit file name, e.g. "hello.service"; required.
	Name string
	// Contents is the unit file; empty only to enable an existing unit.
	Contents string
	// Enabled enables the unit (its [Install] section must say where).
	Enabled bool
}

// Installer describes an installer config: the config a live (PXE) system
// boots with, which writes InstallerPath, a script that installs the
// distribution onto Disk with the installed system's config from
// InstalledConfigURL and reboots, and enables InstallerUnit to run it once
// the network is online. A debug user receives SSHKeys so a person can log
// in to the live system while it installs.
type Installer struct {
	// Distro is Flatcar (the zero value means Flatcar) or FCOS.
	Distro Distro
	// Disk is the target block device, e.g. "/dev/sda"; required.
	Disk string

	// Channel is Flatcar's release channel (-C): stable, beta, alpha or
	// lts; empty leaves flatcar-install's default (stable).
	Channel string
	// Version is the Flatcar version (-V), e.g. "4081.2.0" or "current";
	// empty leaves flatcar-install's default (current).
	Version string
	// ImageBaseURL is where flatcar-install downloads images from (-b),
	// e.g. "http://10.99.0.1:8080/assets/flatcar"; empty uses Flatcar's
	// public mirror.
	ImageBaseURL string

	// Stream is the Fedora CoreOS stream (--stream): stable, testing or
	// next. Mutually exclusive with ImageURL; with neither, coreos-installer
	// installs the image of the live system it runs in.
	Stream string
	// ImageURL is a Fedora CoreOS metal image (--image-url).
	ImageURL string
	// InsecureImage skips coreos-installer's image signature check
	// (--insecure); needed when ImageURL has no .sig file next to it.
	InsecureImage bool

	// InstalledConfigURL is where the installed system's config is fetched
	// from, typically "<base>/ignition?mac=<MAC>&os=installed"; the fetch
	// tells the server the machine is installing. Empty installs without a
	// config. For FCOS an http:// URL adds --insecure-ignition, since
	// coreos-installer otherwise refuses configs fetched without TLS or a
	// hash.
	InstalledConfigURL string
	// ExtraArgs are appended to the install command, each shell-quoted.
	ExtraArgs []string

	// SSHKeys are authorized for the user DebugUser, created in the
	// distribution's administrator groups; no keys, no debug user.
	SSHKeys []string
	// Users are further accounts.
	Users []User
	// Units are further systemd units.
	Units []Unit

	// SpecVersion is the Ignition spec version of the config; empty means
	// DefaultVersion.
	SpecVersion string
}

func (d Distro) normal() (Distro, error) {
	switch d {
	case "", Flatcar:
		return Flatcar, nil
	case FCOS:
		return FCOS, nil
	}
	return "", fmt.Errorf("%w: distro %q: want %q or %q", ErrBadInstaller, string(d), Flatcar, FCOS)
}

// adminGroups are the groups a debug user joins, per distribution.
func (d Distro) adminGroups() []string {
	if d == FCOS {
		return []string{"wheel"}
	}
	return []string{"sudo", "docker"}
}

// Script returns the install script written to InstallerPath.
func (in *Installer) Script() (string, error) {
	distro, err := in.Distro.normal()
	if err != nil {
		return "", err
	}
	if err := in.check(distro); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("#!/bin/bash\n")
	fmt.Fprintf(&b, "# Written by metalboot: installs %s to %s, then reboots.\n", distroName(distro), in.Disk)
	b.WriteString("set -euxo pipefail\n")
	var cmd []string
	switch distro {
	case Flatcar:
		cmd = []string{"flatcar-install", "-d", in.Disk}
		if in.Channel != "" {
			cmd = append(cmd, "-C", in.Channel)
		}
		if in.Version != "" {
			cmd = append(cmd, "-V", in.Version)
		}
		if in.InstalledConfigURL != "" {
			const file = "/tmp/ignition.json"
			b.WriteString(shellJoin("curl", "--fail", "--silent", "--show-error", "--location",
				"--retry", "10", "--retry-delay", "2", "--retry-connrefused", "-o", file, in.InstalledConfigURL))
			b.WriteByte('\n')
			cmd = append(cmd, "-i", file)
		}
		if in.ImageBaseURL != "" {
			cmd = append(cmd, "-b", in.ImageBaseURL)
		}
	case FCOS:
		cmd = []string{"coreos-installer", "install", in.Disk}
		if in.InstalledConfigURL != "" {
			cmd = append(cmd, "--ignition-url", in.InstalledConfigURL)
			if strings.HasPrefix(in.InstalledConfigURL, "http:") {
				cmd = append(cmd, "--insecure-ignition")
			}
		}
		switch {
		case in.ImageURL != "":
			cmd = append(cmd, "--image-url", in.ImageURL)
		case in.Stream != "":
			cmd = append(cmd, "--stream", in.Stream)
		}
		if in.InsecureImage {
			cmd = append(cmd, "--insecure")
		}
	}
	cmd = append(cmd, in.ExtraArgs...)
	b.WriteString(shellJoin(cmd...))
	b.WriteString("\nudevadm settle\nsystemctl reboot\n")
	return b.String(), nil
}

func distroName(d Distro) string {
	if d == FCOS {
		return "Fedora CoreOS"
	}
	return "Flatcar"
}

func (in *Installer) check(distro Distro) error {
	if !strings.HasPrefix(in.Disk, "/dev/") || len(in.Disk) <= len("/dev/") {
		return fmt.Errorf("%w: disk %q: want a device path under /dev/", ErrBadInstaller, in.Disk)
	}
	fields := map[string]string{"disk": in.Disk, "channel": in.Channel, "version": in.Version, "stream": in.Stream}
	for _, a := range in.ExtraArgs {
		if err := oneLine("extra argument", a); err != nil {
			return err
		}
	}
	for k, v := range fields {
		if err := oneLine(k, v); err != nil {
			return err
		}
	}
	urls := map[string]string{"image base URL": in.ImageBaseURL, "image URL": in.ImageURL, "installed config URL": in.InstalledConfigURL}
	for k, v := range urls {
		if v == "" {
			continue
		}
		if err := oneLine(k, v); err != nil {
			return err
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: %s %q: want an http:// or https:// URL", ErrBadInstaller, k, v)
		}
	}
	switch distro {
	case Flatcar:
		if in.Stream != "" || in.ImageURL != "" || in.InsecureImage {
			return fmt.Errorf("%w: Stream, ImageURL and InsecureImage are Fedora CoreOS settings; Flatcar uses Channel, Version and ImageBaseURL", ErrBadInstaller)
		}
	case FCOS:
		if in.Channel != "" || in.Version != "" || in.ImageBaseURL != "" {
			return fmt.Errorf("%w: Channel, Version and ImageBaseURL are Flatcar settings; Fedora CoreOS uses Stream or ImageURL", ErrBadInstaller)
		}
		if in.Stream != "" && in.ImageURL != "" {
			return fmt.Errorf("%w: Stream and ImageURL are mutually exclusive", ErrBadInstaller)
		}
	}
	return nil
}

func oneLine(what, v string) error {
	if strings.ContainsAny(v, "\x00\r\n") {
		return fmt.Errorf("%w: %s %q: control characters", ErrBadInstaller, what, v)
	}
	return nil
}

// Config builds the installer config with the 3.4 types. Its
// Ignition.Version is SpecVersion (or DefaultVersion); use JSON for the
// validated bytes.
func (in *Installer) Config() (types.Config, error) {
	script, err := in.Script()
	if err != nil {
		return types.Config{}, err
	}
	distro, _ := in.Distro.normal()
	unit := fmt.Sprintf(`[Unit]
Description=Install %s to %s
Requires=network-online.target
After=network-online.target
ConditionPathExists=%s

[Service]
Type=oneshot
ExecStart=%s
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`, distroName(distro), in.Disk, InstallerPath, InstallerPath)
	cfg := types.Config{Ignition: types.Ignition{Version: orDefault(in.SpecVersion)}}
	cfg.Storage.Files = append(cfg.Storage.Files, file(InstallerPath, 0o500, script))
	cfg.Systemd.Units = append(cfg.Systemd.Units, types.Unit{Name: InstallerUnit, Contents: &unit, Enabled: ptr(true)})
	if err := addSystem(&cfg, distro, in.SSHKeys, in.Users, in.Units); err != nil {
		return types.Config{}, err
	}
	return cfg, nil
}

// JSON returns the installer config as validated Ignition JSON of
// SpecVersion (or DefaultVersion).
func (in *Installer) JSON() ([]byte, error) {
	cfg, err := in.Config()
	if err != nil {
		return nil, err
	}
	return Marshal(cfg, in.SpecVersion)
}

// Installed describes the installed system's config: what the machine
// boots with from disk after the installer ran.
type Installed struct {
	// Distro selects the debug user's groups; the zero value means Flatcar.
	Distro Distro
	// Hostname, when set, is written to /etc/hostname.
	Hostname string
	// SSHKeys are authorized for the user DebugUser; no keys, no debug user.
	SSHKeys []string
	// Users are further accounts.
	Users []User
	// Units are further systemd units.
	Units []Unit
	// SpecVersion is the Ignition spec version; empty means DefaultVersion.
	SpecVersion string
}

// Config builds the installed system's config with the 3.4 types.
func (s *Installed) Config() (types.Config, error) {
	distro, err := s.Distro.normal()
	if err != nil {
		return types.Config{}, err
	}
	cfg := types.Config{Ignition: types.Ignition{Version: orDefault(s.SpecVersion)}}
	if s.Hostname != "" {
		if err := oneLine("hostname", s.Hostname); err != nil {
			return types.Config{}, err
		}
		f := file("/etc/hostname", 0o644, s.Hostname+"\n")
		f.Overwrite = ptr(true)
		cfg.Storage.Files = append(cfg.Storage.Files, f)
	}
	if err := addSystem(&cfg, distro, s.SSHKeys, s.Users, s.Units); err != nil {
		return types.Config{}, err
	}
	return cfg, nil
}

// JSON returns the installed system's config as validated Ignition JSON.
func (s *Installed) JSON() ([]byte, error) {
	cfg, err := s.Config()
	if err != nil {
		return nil, err
	}
	return Marshal(cfg, s.SpecVersion)
}

func addSystem(cfg *types.Config, distro Distro, keys []string, users []User, units []Unit) error {
	if len(keys) > 0 {
		users = append([]User{{Name: DebugUser, SSHKeys: keys, Groups: distro.adminGroups()}}, users...)
	}
	for _, u := range users {
		if u.Name == "" {
			return fmt.Errorf("%w: user without name", ErrBadInstaller)
		}
		pu := types.PasswdUser{Name: u.Name}
		for _, k := range u.SSHKeys {
			if err := oneLine("ssh key of "+u.Name, k); err != nil {
				return err
			}
			pu.SSHAuthorizedKeys = append(pu.SSHAuthorizedKeys, types.SSHAuthorizedKey(strings.TrimSpace(k)))
		}
		for _, g := range u.Groups {
			pu.Groups = append(pu.Groups, types.Group(g))
		}
		if u.PasswordHash != "" {
			pu.PasswordHash = ptr(u.PasswordHash)
		}
		cfg.Passwd.Users = append(cfg.Passwd.Users, pu)
	}
	for _, u := range units {
		if u.Name == "" {
			return fmt.Errorf("%w: unit without name", ErrBadInstaller)
		}
		tu := types.Unit{Name: u.Name}
		if u.Contents != "" {
			tu.Contents = ptr(u.Contents)
		}
		if u.Enabled {
			tu.Enabled = ptr(true)
		}
		cfg.Systemd.Units = append(cfg.Systemd.Units, tu)
	}
	return nil
}

// file is a file with inline contents as a data URL: URL-escaped text or
// base64, whichever is shorter (as Butane does).
func file(path string, mode int, contents string) types.File {
	src := "data:," + dataurl.EscapeString(contents)
	if b64 := dataurl.New([]byte(contents), "text/plain").String(); len(b64) < len(src) {
		src = b64
	}
	return types.File{
		Node:          types.Node{Path: path},
		FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{Source: &src}, Mode: ptr(mode)},
	}
}

func orDefault(v string) string {
	if v == "" {
		return DefaultVersion
	}
	return v
}

func ptr[T any](v T) *T { return &v }

// shellJoin quotes each word for bash where needed and joins them.
func shellJoin(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shellQuote(w)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("@%+=:,./_-", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
