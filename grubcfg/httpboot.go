package grubcfg

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// HTTPBootEarlyConfig returns the configuration embedded in the UEFI
// HTTP-boot image of a server at hostport (its HTTP host and port, as in
// "10.0.0.1:8080" or "deploy.lab:80"; a name needs DNS from DHCP).
//
// GRUB 2.06 takes its network settings from the firmware only after a PXE
// boot: after an HTTP boot no card is configured and $root is unset, so the
// image configures the card with DHCP itself (net_bootp) and reads
// everything else, starting with its modules and the first-stage grub.cfg,
// from hostport. net_bootp leaves $net_default_mac empty, which the first
// stage needs, so it is set from the first card's ($net_efinet0_dhcp_mac):
// on a machine with several NICs the booting one must be the first. It uses
// only simple commands: an embedded config runs before the normal script
// engine is loaded.
func HTTPBootEarlyConfig(hostport string) (string, error) {
	return httpBootEarlyConfig(hostport, "/grub")
}

// httpBootEarlyConfig is HTTPBootEarlyConfig with GRUB's prefix (the HTTP
// path of the directory holding <platform>/*.mod and grub.cfg).
func httpBootEarlyConfig(hostport, prefix string) (string, error) {
	if err := checkHostPort(hostport); err != nil {
		return "", fmt.Errorf("grubcfg: HTTP boot server: %w", err)
	}
	if !strings.HasPrefix(prefix, "/") || !isRelPath(prefix[1:]) || strings.ContainsAny(prefix, " \t\n'\"\\$;&|<>(){}") {
		return "", fmt.Errorf("grubcfg: HTTP boot prefix %q: want a clean absolute path", prefix)
	}
	return "net_bootp\n" +
		"set net_default_interface=efinet0:dhcp\n" +
		"set net_default_mac=$net_efinet0_dhcp_mac\n" +
		"set root=http," + hostport + "\n" +
		"set prefix=(http," + hostport + ")" + prefix + "\n", nil
}

// MakeHTTPBootImage writes the UEFI HTTP-boot image for a server at
// hostport to out with grub-mkimage (Debian package grub-common), taking
// modules from grubDir: /usr/lib/grub/x86_64-efi (package
// grub-efi-amd64-bin) for x86-64, or an arm64-efi directory (package
// grub-efi-arm64-bin) for ARM64. The image's format is the platform
// grubDir's modinfo.sh names (x86_64-efi, arm64-efi); a directory of a
// platform that is not UEFI is an error. The image embeds
// [HTTPBootEarlyConfig]; the rest of GRUB's modules must be served under
// /grub/<platform>/ (labserver serves its TFTP root there, as made by
// grub-mknetdir). [MakeNetDir] calls it with the path DHCP hands HTTP-boot
// clients ([BootFilePath]); call it directly only for a layout of your
// own.
func MakeHTTPBootImage(ctx context.Context, grubDir, out, hostport string) error {
	return makeHTTPBootImage(ctx, grubDir, out, hostport, "/grub")
}

func makeHTTPBootImage(ctx context.Context, grubDir, out, hostport, prefix string) error {
	cfg, err := httpBootEarlyConfig(hostport, prefix)
	if err != nil {
		return err
	}
	format, err := efiPlatform(grubDir)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "grub-http-boot")
	if err != nil {
		return fmt.Errorf("grubcfg: %w", err)
	}
	defer os.RemoveAll(tmp)
	early := filepath.Join(tmp, "early.cfg")
	if err := os.WriteFile(early, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("grubcfg: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("grubcfg: %w", err)
	}
	cmd := exec.CommandContext(ctx, "grub-mkimage", "-O", format, "-d", grubDir,
		"-o", out, "-p", "(http,"+hostport+")"+prefix, "-c", early,
		"efinet", "net", "http", "normal")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("grubcfg: grub-mkimage for HTTP boot: %v: %s", err, bytes.TrimSpace(b))
	}
	return nil
}

// efiPlatform reads the platform of a GRUB module directory from its
// modinfo.sh (grub_modinfo_target_cpu, grub_modinfo_platform), e.g.
// "arm64-efi", and reports an error unless it is a UEFI platform.
func efiPlatform(grubDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(grubDir, "modinfo.sh"))
	if err != nil {
		return "", fmt.Errorf("grubcfg: GRUB modules: %w", err)
	}
	var cpu, platform string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "grub_modinfo_target_cpu":
			cpu = v
		case "grub_modinfo_platform":
			platform = v
		}
	}
	if platform != "efi" || cpu == "" || strings.ContainsAny(cpu, " /\t") {
		return "", fmt.Errorf("grubcfg: %s: GRUB for %q-%q, not UEFI: no HTTP-boot image", grubDir, cpu, platform)
	}
	return cpu + "-" + platform, nil
}
