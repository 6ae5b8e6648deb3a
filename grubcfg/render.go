package grubcfg

import (
	"fmt"
	"io"
	"strconv"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
)

// Loader names the GRUB commands that load a kernel and its initrds.
type Loader struct {
	Linux  string
	Initrd string
}

// The loaders GRUB builds know.
var (
	// LoaderLinux is stock GRUB's "linux"/"initrd", right on both
	// platforms with GRUB 2.06 and later (Debian, upstream).
	LoaderLinux = Loader{Linux: "linux", Initrd: "initrd"}
	// LoaderLinuxEFI is "linuxefi"/"initrdefi", which only
	// distribution-patched GRUBs (older Fedora, RHEL, SUSE) have.
	LoaderLinuxEFI = Loader{Linux: "linuxefi", Initrd: "initrdefi"}
	// LoaderLinux16 is "linux16"/"initrd16", the 16-bit boot protocol on
	// BIOS.
	LoaderLinux16 = Loader{Linux: "linux16", Initrd: "initrd16"}
)

func (l Loader) orDefault() (Loader, error) {
	if l == (Loader{}) {
		return LoaderLinux, nil
	}
	switch l {
	case LoaderLinux, LoaderLinuxEFI, LoaderLinux16:
		return l, nil
	}
	return l, fmt.Errorf("%w: loader %q/%q: want linux/initrd, linuxefi/initrdefi or linux16/initrd16", ErrBadOption, l.Linux, l.Initrd)
}

// Options shape a per-machine configuration. The zero value boots at once
// with stock GRUB's commands and no serial terminal.
type Options struct {
	// Timeout is how many seconds GRUB shows its menu before booting the
	// default entry; 0 boots at once.
	Timeout int
	// Serial, when set, turns GRUB's serial terminal on (BIOS; EFI too if
	// Serial.EFI).
	Serial *Serial
	// EFILoader and BIOSLoader choose the commands of each entry; zero
	// means LoaderLinux.
	EFILoader  Loader
	BIOSLoader Loader
	// LocalDisk is the GRUB device a BIOS machine chainloads to boot its
	// disk in RenderLocal; "" means "hd0" (the first BIOS disk).
	LocalDisk string
	// BIOSExit makes RenderLocal's BIOS entry run "exit" instead of
	// chainloading LocalDisk, handing the boot back to the PXE ROM, which
	// on most firmware goes on with the next boot device.
	BIOSExit bool
	// TFTP, when set, renders for a GRUB without HTTP (Debian's signed
	// GRUB, the Secure Boot chain): kernel and initrds are loaded over
	// TFTP from the tree the HTTP server also serves (see TFTPFiles and
	// TFTPConfigHandler). A location only HTTP can reach is an error
	// wrapping ErrNeedsHTTP. Nil: locations as FilePath gives them.
	TFTP *TFTPFiles
}

func (o Options) validate() (efi, bios Loader, err error) {
	if o.Timeout < 0 || o.Timeout > 86400 {
		return efi, bios, fmt.Errorf("%w: Timeout %d", ErrBadOption, o.Timeout)
	}
	if err := o.Serial.validate(); err != nil {
		return efi, bios, err
	}
	if efi, err = o.EFILoader.orDefault(); err != nil {
		return efi, bios, err
	}
	if bios, err = o.BIOSLoader.orDefault(); err != nil {
		return efi, bios, err
	}
	if err := o.TFTP.validate(); err != nil {
		return efi, bios, err
	}
	if o.LocalDisk != "" && !validDevice(o.LocalDisk) {
		return efi, bios, fmt.Errorf("%w: LocalDisk %q: want a GRUB device name like hd0 or hd1,gpt1", ErrBadOption, o.LocalDisk)
	}
	return efi, bios, nil
}

func validDevice(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == ',') {
			return false
		}
	}
	return s != "" && len(s) <= 32
}

// Render writes m's network-boot configuration: a menu entry for EFI and
// one for BIOS, the default chosen by $grub_platform when GRUB runs. Each
// loads the profile's kernel with the kernel arguments rendered on the
// server (profile.Machine.RenderBoot) and its initrds. Kernel and initrd
// locations go through FilePath; every value through Quote. An initrd
// entry in iPXE's form "--name NAME LOCATION" (matchbox's Fedora CoreOS
// profiles) loads LOCATION, and "initrd=NAME" kernel arguments are left
// out: GRUB hands the initrds to the kernel itself (see dropInitrdArgs).
// It returns an error wrapping ErrNoKernel when the profile has no
// kernel, ErrBadPath or ErrUnsupportedURL for a location GRUB cannot
// load, profile.ErrBadInitrd for an initrd entry it cannot read,
// ErrBadOption for bad opts, or a template error from the profile;
// nothing is written then.
func Render(w io.Writer, m *profile.Machine, opts Options) error {
	b, err := AppendConfig(nil, m, opts)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// AppendConfig is Render appending to a buffer; on error it returns dst
// unchanged.
func AppendConfig(dst []byte, m *profile.Machine, opts Options) ([]byte, error) {
	efi, bios, err := opts.validate()
	if err != nil {
		return dst, err
	}
	if m == nil || m.Profile == nil {
		return dst, fmt.Errorf("%w: no profile", ErrNoKernel)
	}
	boot, err := m.RenderBoot()
	if err != nil {
		return dst, fmt.Errorf("profile %q: %w", m.Profile.ID, err)
	}
	if boot.Kernel == "" {
		return dst, fmt.Errorf("%w: profile %q", ErrNoKernel, m.Profile.ID)
	}
	filePath := FilePath
	if opts.TFTP != nil {
		filePath = opts.TFTP.FilePath
	}
	kernel, err := filePath(boot.Kernel)
	if err != nil {
		return dst, fmt.Errorf("profile %q: kernel: %w", m.Profile.ID, err)
	}
	var initrdBuf [4]string
	initrds := initrdBuf[:0]
	if len(boot.Initrd) > len(initrdBuf) {
		initrds = make([]string, 0, len(boot.Initrd))
	}
	for _, s := range boot.Initrd {
		in, err := profile.ParseInitrd(s)
		if err != nil {
			return dst, fmt.Errorf("profile %q: initrd: %w", m.Profile.ID, err)
		}
		f, err := filePath(in.Path)
		if err != nil {
			return dst, fmt.Errorf("profile %q: initrd: %w", m.Profile.ID, err)
		}
		initrds = append(initrds, f)
	}
	boot.Args = dropInitrdArgs(boot.Args)
	title := m.Profile.Name
	if title == "" {
		title = m.Profile.ID
	}

	b := appendHeader(dst, m, opts)
	for _, e := range [...]struct {
		id, label string
		l         Loader
	}{{"efi", "EFI", efi}, {"bios", "BIOS", bios}} {
		b = append(b, "\nmenuentry "...)
		b = appendQuoted(b, title, " (", e.label, ")")
		b = append(b, " --id "+e.id+" {\n  echo "...)
		b = appendQuoted(b, "metalboot: loading kernel ", kernel)
		b = append(b, "\n  "+e.l.Linux+" "...)
		b = AppendQuote(b, kernel)
		for _, a := range boot.Args {
			b = append(b, ' ')
			b = AppendQuote(b, a)
		}
		b = append(b, '\n')
		if len(initrds) > 0 {
			b = append(b, "  echo "...)
			b = append(b, "'metalboot: loading initrd"...)
			for _, s := range initrds {
				b = append(b, ' ')
				b = appendEscaped(b, s)
			}
			b = append(b, '\'')
			b = append(b, "\n  "+e.l.Initrd...)
			for _, s := range initrds {
				b = append(b, ' ')
				b = AppendQuote(b, s)
			}
			b = append(b, '\n')
		}
		b = append(b, "}\n"...)
	}
	return b, nil
}

// dropInitrdArgs removes "initrd=NAME" kernel arguments (matchbox's
// Flatcar and Fedora CoreOS profiles carry them for iPXE under UEFI):
// GRUB loads the initrds itself and hands them to the kernel, by the EFI
// handover protocol or the boot parameters, never as files the EFI stub
// could open by name. Left in, the argument makes a kernel started
// through its PE entry point (as GRUB 2.12 may do) look for a file
// "NAME" on GRUB's device and fail.
func dropInitrdArgs(args []string) []string {
	for i, a := range args {
		if _, ok := profile.InitrdArg(a); ok {
			out := append([]string(nil), args[:i]...)
			for _, a := range args[i+1:] {
				if _, ok := profile.InitrdArg(a); !ok {
					out = append(out, a)
				}
			}
			return out
		}
	}
	return args
}

// RenderLocal writes a configuration that boots m from its local disk, for
// a machine that is already installed (see Handler.LocalBoot):
//
//   - EFI: "exit" returns to the firmware, whose boot manager goes on with
//     the next boot option (the installed system's). Chainloading a file
//     from the ESP would need its partition and path, which differ per OS.
//   - BIOS: "chainloader +1" on Options.LocalDisk (default hd0), the
//     first disk's MBR; or "exit" with Options.BIOSExit. A BIOS GRUB loaded
//     by PXE cannot rely on exit: many PXE ROMs reboot on return, which
//     would boot the network again.
func RenderLocal(w io.Writer, m *profile.Machine, opts Options) error {
	b, err := AppendLocalConfig(nil, m, opts)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// AppendLocalConfig is RenderLocal appending to a buffer; on error it
// returns dst unchanged.
func AppendLocalConfig(dst []byte, m *profile.Machine, opts Options) ([]byte, error) {
	if _, _, err := opts.validate(); err != nil {
		return dst, err
	}
	disk := opts.LocalDisk
	if disk == "" {
		disk = "hd0"
	}
	b := appendHeader(dst, m, opts)
	b = append(b, "\nmenuentry "...)
	b = AppendQuote(b, "Boot from local disk (EFI)")
	b = append(b, " --id efi {\n  echo "...)
	b = AppendQuote(b, "metalboot: installed; returning to the firmware to boot the next boot option (local disk)")
	b = append(b, "\n  exit\n}\n\nmenuentry "...)
	b = AppendQuote(b, "Boot from local disk (BIOS)")
	b = append(b, " --id bios {\n  echo "...)
	if opts.BIOSExit {
		b = AppendQuote(b, "metalboot: installed; returning to the firmware to boot the next device")
		b = append(b, "\n  exit\n}\n"...)
		return b, nil
	}
	b = AppendQuote(b, "metalboot: installed; booting the master boot record of ("+disk+")")
	// A GRUB made by grub-mknetdir has neither the BIOS disk driver nor
	// the chainloader built in; insmod loads them from its prefix (a no-op
	// when built in).
	b = append(b, "\n  insmod biosdisk\n  insmod chain\n  set root="...)
	b = AppendQuote(b, "("+disk+")")
	b = append(b, "\n  chainloader +1\n}\n"...)
	return b, nil
}

// appendHeader writes what both configurations start with: the timeout,
// the serial terminal and the platform's default entry.
func appendHeader(b []byte, m *profile.Machine, opts Options) []byte {
	b = append(b, "# metalboot: generated for one machine, do not edit\nset timeout="+strconv.Itoa(opts.Timeout)+"\n"...)
	b = append(b, "if [ \"$grub_platform\" = \"efi\" ]; then\n  set default=efi\n"...)
	if opts.Serial != nil && opts.Serial.EFI {
		b = appendSerial(b, opts.Serial, "  ")
	}
	b = append(b, "else\n  set default=bios\n"...)
	if opts.Serial != nil {
		b = appendSerial(b, opts.Serial, "  ")
	}
	b = append(b, "fi\necho "...)
	b = append(b, "'metalboot: "...)
	b = appendDescription(b, m)
	return append(b, "'\n"...)
}

// describe names a machine in logs and messages.
func describe(m *profile.Machine) string {
	return string(appendDescription(nil, m))
}

// appendDescription appends describe(m), escaped for single quotes.
func appendDescription(b []byte, m *profile.Machine) []byte {
	if m == nil {
		return append(b, "unknown machine"...)
	}
	b = append(b, "machine "...)
	if m.MAC.IsZero() {
		b = append(b, "without MAC"...)
	} else {
		b = appendMAC(b, m.MAC)
	}
	if m.Hostname != "" {
		b = append(b, " ("...)
		b = appendEscaped(b, m.Hostname)
		b = append(b, ')')
	}
	if m.Group != nil {
		b = append(b, ", group "...)
		b = appendEscaped(b, m.Group.ID)
	}
	if m.Profile != nil {
		b = append(b, ", profile "...)
		b = appendEscaped(b, m.Profile.ID)
	}
	return b
}

func appendMAC(b []byte, m hwaddr.MAC) []byte {
	const hexd = "0123456789abcdef"
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexd[x>>4], hexd[x&0xf])
	}
	return b
}
