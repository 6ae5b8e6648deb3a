//go:build linux

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Machine is one test machine of a boot test.
type Machine struct {
	// Name labels the machine's files and tap device (short: the tap is
	// "tap"+Name, at most 15 characters).
	Name     string
	Firmware Firmware
	MAC      hwaddr.MAC
	// Hostname goes into the machine's group metadata (and so its
	// Ignition config).
	Hostname string
	// OVMFPXE boots a UEFI machine with OVMF's own PXE client (EDK2's,
	// as on real hardware) instead of the NIC's iPXE option ROM.
	OVMFPXE bool
	// HTTPBoot boots a UEFI machine with UEFI HTTP boot: GRUB comes over
	// HTTP from labserver's /grub/ tree instead of TFTP.
	HTTPBoot bool
	// IPXE marks a machine that boots through iPXE into labserver's
	// /boot.ipxe and /ipxe instead of GRUB: its group's metadata says
	// boot_loader "ipxe", so labserver's DHCP hands its firmware the iPXE
	// binary over TFTP (OVMF's own PXE, OVMFPXE) or, when the firmware
	// runs iPXE already (SeaBIOS's NIC option ROM, the NIC's iPXE EFI
	// driver under OVMF), the URL of /boot.ipxe.
	IPXE bool
	// Profile is the profile its group boots ([ProfileID] when empty).
	Profile string
	// SecureBoot boots a UEFI machine with Secure Boot enforced
	// (VMConfig.SecureBoot); the lab's secure_boot hands it shim.
	SecureBoot bool
	// Unsigned puts a Secure Boot machine's group off the Secure Boot
	// chain (metadata secure_boot false): DHCP hands it the unsigned
	// GRUB image, which its firmware must refuse.
	Unsigned bool
}

// VMConfig is the machine's QEMU configuration (Dir, Tap and Timeout are
// left for the caller).
func (m Machine) VMConfig() VMConfig {
	c := VMConfig{Name: m.Name, Firmware: m.Firmware, MAC: m.MAC, UseOVMFPXE: m.OVMFPXE, HTTPBoot: m.HTTPBoot, SecureBoot: m.SecureBoot}
	if m.IPXE && m.Firmware == BIOS {
		// SeaBIOS's serial console (sercon): the iPXE option ROM prints
		// through the BIOS, which otherwise shows only on a display.
		c.ExtraArgs = append(c.ExtraArgs, "-machine", "graphics=off")
	}
	return c
}

// LoaderStage is the timeline stage in which the firmware fetched its boot
// loader: StageTFTP (GRUB), StageHTTPBoot for an HTTP-boot machine,
// StageIPXEBoot (/boot.ipxe) for an iPXE machine.
func (m Machine) LoaderStage() string {
	switch {
	case m.IPXE:
		return StageIPXEBoot
	case m.HTTPBoot:
		return StageHTTPBoot
	}
	return StageTFTP
}

// ConfigStage is the timeline stage in which the boot loader fetched the
// machine's configuration: StageGrub (/grub), or StageIPXE (/ipxe).
func (m Machine) ConfigStage() string {
	if m.IPXE {
		return StageIPXE
	}
	return StageGrub
}

// ProfileName is the profile the machine's group boots.
func (m Machine) ProfileName() string {
	if m.Profile == "" {
		return ProfileID
	}
	return m.Profile
}

// IPXEMachines are the iPXE machines of the end-to-end test: one BIOS
// (SeaBIOS, whose NIC option ROM is iPXE) booting [ProfileNamedID]; one
// UEFI (OVMF running the NIC's iPXE EFI driver) booting [ProfileID], which
// has no initrd= argument: UEFI iPXE hands the initrd to the kernel only
// by name, so the renderer must add it; and one UEFI with OVMF's own PXE,
// which chainloads Debian's ipxe.efi over TFTP, booting [ProfileNamedID].
func IPXEMachines() []Machine {
	return []Machine{
		{Name: "ipxebios", Firmware: BIOS, MAC: hwaddr.MustParse("52:54:00:99:00:21"), Hostname: "ipxebios.lab", IPXE: true, Profile: ProfileNamedID},
		{Name: "ipxeuefi", Firmware: UEFI, MAC: hwaddr.MustParse("52:54:00:99:00:22"), Hostname: "ipxeuefi.lab", IPXE: true},
		{Name: "ipxeefi", Firmware: UEFI, MAC: hwaddr.MustParse("52:54:00:99:00:23"), Hostname: "ipxeefi.lab", IPXE: true, OVMFPXE: true, Profile: ProfileNamedID},
	}
}

// IPXEBinary is the iPXE binary labserver's DHCP hands a UEFI x86-64
// machine that is to boot with iPXE (dhcpsrv.DefaultIPXEFiles); the
// caller's TFTPRootFunc puts it there.
const IPXEBinary = "ipxe/ipxe.efi"

// HTTPBootMachine is a UEFI machine (OVMF) that boots with UEFI HTTP boot.
func HTTPBootMachine() Machine {
	return Machine{Name: "http", Firmware: UEFI, MAC: hwaddr.MustParse("52:54:00:99:00:03"), Hostname: "http.lab", HTTPBoot: true}
}

// DefaultMachines are the two machines of the end-to-end test: one UEFI
// (OVMF, booting with its own EDK2 PXE client) and one BIOS (SeaBIOS with
// the iPXE option ROM).
func DefaultMachines() []Machine {
	return []Machine{
		{Name: "uefi", Firmware: UEFI, MAC: hwaddr.MustParse("52:54:00:99:00:01"), Hostname: "uefi.lab", OVMFPXE: true},
		{Name: "bios", Firmware: BIOS, MAC: hwaddr.MustParse("52:54:00:99:00:02"), Hostname: "bios.lab"},
	}
}

// ProfileID, ProfileNamedID, IgnitionTemplate and IgnitionParam name what
// [WriteDataDir] writes.
const (
	ProfileID        = "e2e-initrd"
	ProfileNamedID   = "e2e-named"
	IgnitionTemplate = "e2e.yaml.tmpl"
	IgnitionParam    = "metalboot.ignition"
)

// ignitionTemplate is a Butane (flatcar) template; the machine's hostname,
// MAC and the base URL end up in the config the initrd prints, so the test
// can tell one machine's config from the other's.
const ignitionTemplate = `variant: flatcar
version: 1.0.0
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: "{{.hostname}}"
    - path: /etc/metalboot-e2e
      mode: 0644
      contents:
        inline: "mac={{.MAC}} base={{.BaseURL}}"
passwd:
  users:
    - name: debug
`

// WriteDataDir writes a matchbox-compatible data directory into dir (an
// iPXE machine's group has metadata boot_loader "ipxe"): two
// profiles that boot /assets/vmlinuz with /assets/initrd.cpio and the
// kernel arguments metalboot.ignition={{.BaseURL}}/ignition?mac={{.MAC}}
// and console=ttyS0, [ProfileID] with the initrd as a plain path and
// [ProfileNamedID] in the form of matchbox's Fedora CoreOS profiles
// ("--name main /assets/initrd.cpio" and the argument initrd=main); one
// group per machine selecting its MAC (metadata hostname) with the
// machine's profile (ARM64 machines: two groups, see arm64Groups, and
// the profile [ProfileARM64ID]); and the Ignition template
// [IgnitionTemplate].
func WriteDataDir(dir string, machines []Machine) error {
	plain := map[string]any{
		"id":   ProfileID,
		"name": "metalboot e2e: busybox initrd that prints its Ignition config",
		"boot": map[string]any{
			"kernel": "/assets/vmlinuz",
			"initrd": []string{"/assets/initrd.cpio"},
			"args":   []string{IgnitionParam + "={{.BaseURL}}/ignition?mac={{.MAC}}", "console=ttyS0"},
		},
		"ignition_id": IgnitionTemplate,
	}
	named := map[string]any{
		"id":   ProfileNamedID,
		"name": "metalboot e2e: the same, with the initrd named as matchbox's Fedora CoreOS profiles name it",
		"boot": map[string]any{
			"kernel": "/assets/vmlinuz",
			"initrd": []string{"--name main /assets/initrd.cpio"},
			"args":   []string{"initrd=main", IgnitionParam + "={{.BaseURL}}/ignition?mac={{.MAC}}", "console=ttyS0"},
		},
		"ignition_id": IgnitionTemplate,
	}
	files := map[string]any{
		filepath.Join("profiles", ProfileID+".json"):      plain,
		filepath.Join("profiles", ProfileNamedID+".json"): named,
	}
	for _, m := range machines {
		if m.Firmware == ARM64 {
			files[filepath.Join("profiles", ProfileARM64ID+".json")] = arm64Profile()
			maps.Copy(files, arm64Groups(m))
			continue
		}
		md := map[string]any{"hostname": m.Hostname, "firmware": string(m.Firmware)}
		if m.IPXE {
			md["boot_loader"] = "ipxe"
		}
		if m.Unsigned {
			md["secure_boot"] = false
		}
		files[filepath.Join("groups", "e2e-"+m.Name+".json")] = map[string]any{
			"id":       "e2e-" + m.Name,
			"name":     "e2e " + string(m.Firmware) + " machine",
			"profile":  m.ProfileName(),
			"selector": map[string]string{"mac": m.MAC.String()},
			"metadata": md,
		}
	}
	for name, v := range files {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(dir, "ignition", IgnitionTemplate), []byte(ignitionTemplate))
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	return nil
}

// LabserverConfig is what [LabserverYAML] puts into lab.yaml.
type LabserverConfig struct {
	Data, Assets, TFTPRoot, State string
	// BootFiles is dhcp.boot_files (architecture name → boot file), e.g.
	// {"bios": IPXEBootURL, "efi64": IPXEBootURL} for a lab whose
	// machines run iPXE already; nil keeps labserver's GRUB images.
	BootFiles map[string]string
	// KeepIPv6Wait turns labserver's router advertisements off
	// (dhcp.end_ipv6_wait: false), to measure what they save.
	KeepIPv6Wait bool
	// SecureBoot is the lab's secure_boot: UEFI x86-64 machines get shim.
	SecureBoot bool
}

// LabserverYAML renders examples/labserver's config file for the lab
// network of [NewLab]: HTTP on 10.99.0.1:8080, TFTP on 10.99.0.1:69, DNS
// off, DHCP on the bridge handing out 10.99.0.100–200.
func LabserverYAML(c LabserverConfig) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return `http: ` + ServerIP + `:8080
tftp: ` + ServerIP + `:69
dns: ""
base_url: http://` + ServerIP + `:8080
data: ` + q(c.Data) + `
assets: ` + q(c.Assets) + `
tftp_root: ` + q(c.TFTPRoot) + `
state: ` + q(c.State) + `
# The test reads /ignition from the server's own address, as an operator
# on the server would; machines get only their own config (leased).
admin_allow: [127.0.0.0/8, ` + ServerIP + `/32]
ignition_clients: leased
secure_boot: ` + fmt.Sprint(c.SecureBoot) + `
dhcp:
  interface: ` + BridgeName + `
  server_ip: ` + ServerIP + `
  subnet: 10.99.0.0/24
  range: [10.99.0.100, 10.99.0.200]
  router: ` + ServerIP + `
  dns: [` + ServerIP + `]
  domain: lab
  lease_time: 1h
  end_ipv6_wait: ` + fmt.Sprint(!c.KeepIPv6Wait) + `
` + bootFilesYAML(c.BootFiles, q)
}

// IPXEBootURL is labserver's /boot.ipxe in the lab network.
const IPXEBootURL = "http://" + ServerIP + ":8080/boot.ipxe"

func bootFilesYAML(files map[string]string, q func(string) string) string {
	if len(files) == 0 {
		return ""
	}
	s := "  boot_files:\n"
	for _, k := range slices.Sorted(maps.Keys(files)) {
		s += "    " + k + ": " + q(files[k]) + "\n"
	}
	return s
}

// Timeline stage names of labserver's /machines JSON, in boot order.
const (
	StageDHCPLease = "dhcp-lease"
	StageTFTP      = "tftp"
	StageHTTPBoot  = "http-boot"
	StageIPXEBoot  = "ipxe-boot"
	StageGrub      = "grub"
	StageIPXE      = "ipxe"
	StageKernel    = "kernel"
	StageInitrd    = "initrd"
	StageIgnition  = "ignition"
)

// TimelineEvent is one event of a machine in /machines?format=json.
type TimelineEvent struct {
	Time   time.Time `json:"time"`
	Stage  string    `json:"stage"`
	Detail string    `json:"detail"`
	IP     string    `json:"ip"`
}

// TimelineMachine is one machine of /machines?format=json.
type TimelineMachine struct {
	MAC       string          `json:"mac"`
	IP        string          `json:"ip"`
	Hostname  string          `json:"hostname"`
	Installed bool            `json:"installed"`
	Events    []TimelineEvent `json:"events"`
}

// FetchTimeline GETs url (…/machines?format=json) and decodes it.
func FetchTimeline(c *http.Client, url string) ([]TimelineMachine, []byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, nil, fmt.Errorf("e2e: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("e2e: GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, body, fmt.Errorf("e2e: GET %s: %s", url, resp.Status)
	}
	var ms []TimelineMachine
	if err := json.Unmarshal(body, &ms); err != nil {
		return nil, body, fmt.Errorf("e2e: GET %s: decode: %w", url, err)
	}
	return ms, body, nil
}

// CheckTimeline verifies that m's timeline shows a complete boot: a DHCP
// lease, a TFTP transfer of its boot file (files.For(m); an HTTP transfer
// for an HTTP-boot machine; /boot.ipxe for an iPXE machine), /grub (/ipxe
// for an iPXE machine), the kernel, the initrd and /ignition,
// with each stage first seen no earlier than the one before. It returns
// every problem found.
func CheckTimeline(ms []TimelineMachine, m Machine, files BootFiles) []string {
	return CheckTimelineSince(ms, m, files, time.Time{})
}

// CheckTimelineSince is [CheckTimeline] over the events at or after since
// only (e.g. the power-on of a second boot: labserver keeps a bounded number
// of events per machine, so an earlier boot's first events may be gone).
func CheckTimelineSince(ms []TimelineMachine, m Machine, files BootFiles, since time.Time) []string {
	i := slices.IndexFunc(ms, func(r TimelineMachine) bool {
		mac, err := hwaddr.Parse(r.MAC)
		return err == nil && mac == m.MAC
	})
	if i < 0 {
		return []string{fmt.Sprintf("%s (%s) is not in /machines", m.MAC, m.Name)}
	}
	r := ms[i]
	r.Events = slices.DeleteFunc(slices.Clone(r.Events), func(e TimelineEvent) bool { return e.Time.Before(since) })
	var probs []string
	first := map[string]int{}
	for j, e := range r.Events {
		if _, ok := first[e.Stage]; !ok {
			first[e.Stage] = j
		}
	}
	prev, prevStage := -1, ""
	for _, st := range []string{StageDHCPLease, m.LoaderStage(), m.ConfigStage(), StageKernel, StageInitrd, StageIgnition} {
		j, ok := first[st]
		if !ok {
			probs = append(probs, fmt.Sprintf("%s: no %q event", m.MAC, st))
			continue
		}
		if j < prev {
			probs = append(probs, fmt.Sprintf("%s: %q (event %d) before %q (event %d)", m.MAC, st, j, prevStage, prev))
		}
		prev, prevStage = j, st
	}
	boot := files.For(m)
	if m.IPXE {
		boot = IPXEBootURL
		if m.OVMFPXE && !slices.ContainsFunc(r.Events, func(e TimelineEvent) bool {
			return e.Stage == StageTFTP && strings.Contains(e.Detail, IPXEBinary)
		}) {
			probs = append(probs, fmt.Sprintf("%s: no %q event names the iPXE binary %s", m.MAC, StageTFTP, IPXEBinary))
		}
	}
	if boot == "" {
		probs = append(probs, fmt.Sprintf("%s: no %s boot file to check for", m.MAC, m.Firmware))
	} else if !slices.ContainsFunc(r.Events, func(e TimelineEvent) bool {
		return e.Stage == m.LoaderStage() && strings.Contains(e.Detail, path.Base(boot))
	}) {
		probs = append(probs, fmt.Sprintf("%s: no %q event names its boot file %s", m.MAC, m.LoaderStage(), boot))
	}
	return probs
}

// FormatTimeline renders a timeline for logs.
func FormatTimeline(ms []TimelineMachine) string {
	var b strings.Builder
	for _, r := range ms {
		fmt.Fprintf(&b, "%s %s %s installed=%v\n", r.MAC, r.IP, r.Hostname, r.Installed)
		for _, e := range r.Events {
			fmt.Fprintf(&b, "  %s %-16s %-15s %s\n", e.Time.Format("15:04:05.000"), e.Stage, e.IP, e.Detail)
		}
	}
	return b.String()
}

// BootResult is what [WaitBoot] saw of one machine.
type BootResult struct {
	VM *VM
	// Ignition is the config the initrd printed.
	Ignition string
	// Printed is the time from power-on to the printed config.
	Printed time.Duration
	// Exited is the time from power-on to QEMU's exit.
	Exited time.Duration
	Err    error
}

// WaitBoot waits, concurrently, for every VM to print its config between
// [MarkerIgnitionBegin] and [MarkerIgnitionEnd] and then to power off,
// bounded by ctx.
func WaitBoot(ctx context.Context, vms ...*VM) []BootResult {
	res := make([]BootResult, len(vms))
	var wg sync.WaitGroup
	for i, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &res[i]
			r.VM = vm
			r.Printed, r.Err = vm.WaitFor(ctx, MarkerIgnitionEnd)
			if r.Err != nil {
				return
			}
			var ok bool
			r.Ignition, ok = ExtractIgnition(vm.Serial())
			if !ok {
				r.Err = fmt.Errorf("e2e: %s: config markers not found", vm.Config.Name)
				return
			}
			select {
			case <-vm.Done():
				r.Exited = time.Since(vm.Started)
				if err := vm.ExitErr(); err != nil {
					r.Err = fmt.Errorf("e2e: %s: QEMU did not power off cleanly: %w", vm.Config.Name, err)
				}
			case <-ctx.Done():
				r.Err = fmt.Errorf("e2e: %s: printed its config but did not power off: %w", vm.Config.Name, ctx.Err())
			}
		}()
	}
	wg.Wait()
	return res
}

// DumpOnFailure registers a cleanup that, when the test failed, logs the
// tail of every VM's serial console and of every process log.
func DumpOnFailure(t testing.TB, vms func() []*VM, procs ...*Process) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, vm := range vms() {
			t.Logf("--- %s serial console (last 40 lines) ---\n%s", vm.Config.Name, vm.Tail(40))
			if out := strings.TrimSpace(vm.Output()); out != "" {
				t.Logf("--- %s QEMU output ---\n%s", vm.Config.Name, out)
			}
		}
		for _, p := range procs {
			t.Logf("--- %s log (last 60 lines) ---\n%s", p.Name, TailLines(p.Output(), 60))
		}
	})
}

// IgnitionFile returns the decoded contents of the file at path in an
// Ignition config (JSON), whose storage.files[].contents.source is a data
// URL (plain or base64; Butane picks either). Compressed contents are not
// supported.
func IgnitionFile(config, path string) (string, error) {
	var c struct {
		Storage struct {
			Files []struct {
				Path     string `json:"path"`
				Contents struct {
					Source      string `json:"source"`
					Compression string `json:"compression"`
				} `json:"contents"`
			} `json:"files"`
		} `json:"storage"`
	}
	if err := json.Unmarshal([]byte(config), &c); err != nil {
		return "", fmt.Errorf("e2e: ignition config: %w", err)
	}
	for _, f := range c.Storage.Files {
		if f.Path != path {
			continue
		}
		if f.Contents.Compression != "" {
			return "", fmt.Errorf("e2e: ignition config: %s: compression %q not supported", path, f.Contents.Compression)
		}
		return decodeDataURL(f.Contents.Source)
	}
	return "", fmt.Errorf("e2e: ignition config has no file %s", path)
}

func decodeDataURL(s string) (string, error) {
	rest, ok := strings.CutPrefix(s, "data:")
	if !ok {
		return "", fmt.Errorf("e2e: not a data URL: %.40q", s)
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok {
		return "", fmt.Errorf("e2e: data URL without a comma: %.40q", s)
	}
	if strings.HasSuffix(meta, ";base64") {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return "", fmt.Errorf("e2e: data URL: %w", err)
		}
		return string(b), nil
	}
	out, err := url.PathUnescape(data)
	if err != nil {
		return "", fmt.Errorf("e2e: data URL: %w", err)
	}
	return out, nil
}
