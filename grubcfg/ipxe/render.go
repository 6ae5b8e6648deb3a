package ipxe

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/profile"
)

// Errors returned by rendering; test with errors.Is.
var (
	// ErrNoKernel: the machine's profile has no boot.kernel, so there is
	// nothing to network-boot (e.g. an "installed" profile).
	ErrNoKernel = errors.New("profile has no boot kernel")
	// ErrBadLocation: a kernel or initrd location iPXE cannot fetch: a
	// relative path, a GRUB device path, a string that is not one word.
	ErrBadLocation = errors.New("bad location for iPXE")
	// ErrBadInitrdName: two initrds of a profile with the same --name
	// (iPXE and the EFI stub compare names without case).
	ErrBadInitrdName = errors.New("initrd names collide")
)

// FailLabel is the label every failing command of a rendered script jumps
// to; what follows it prints the failure and runs "exit 1".
const FailLabel = "metalboot_failed"

// Format is what profile.Machine.RenderBootFor checks values from the
// network against for an iPXE script: beyond the kernel command line's
// check, no '$', '{' or '}', so that a value can never form, complete or
// sit inside an expansion, which iPXE performs on every word and has no
// escape for.
var Format = profile.Format{
	Name: "iPXE script",
	Reason: func(v string) string {
		if strings.ContainsAny(v, "${}") {
			return "iPXE expands ${…} in every word and has no escape for '$', '{' or '}'"
		}
		return ""
	},
}

// Script is a machine's boot rendered for iPXE, before it is written.
type Script struct {
	// Kernel is the kernel's URL (a path made absolute with the
	// machine's BaseURL when it has one).
	Kernel string
	// Args are the kernel arguments, one "initrd=NAME" per initrd among
	// them.
	Args []string
	// Initrds are the initrds in load order.
	Initrds []Initrd
}

// Initrd is one initrd of a Script.
type Initrd struct {
	// Name is the image name iPXE gives it (--name), which the kernel's
	// EFI stub opens it by.
	Name string
	// URL is its location.
	URL string
}

// Build renders m's profile for iPXE without writing it: the strings go
// through profile.Machine.RenderBootFor(Format), locations through
// Location, every initrd gets a name (its --name, else its file name,
// else "initrd<N>"; a name already taken, compared without case, gives
// way to "initrd<N>" unless it was a --name: ErrBadInitrdName), and the
// profile's "initrd=…" arguments are replaced by one "initrd=NAME" per
// initrd, where the first of them stood (else first). Errors wrap
// ErrNoKernel, ErrBadLocation, ErrBadInitrdName, profile.ErrBadInitrd,
// profile.ErrBadValue (a value from the network) or are template errors.
func Build(m *profile.Machine) (Script, error) {
	if m == nil || m.Profile == nil {
		return Script{}, fmt.Errorf("%w: no profile", ErrNoKernel)
	}
	boot, err := m.RenderBootFor(Format)
	if err != nil {
		return Script{}, fmt.Errorf("profile %q: %w", m.Profile.ID, err)
	}
	if boot.Kernel == "" {
		return Script{}, fmt.Errorf("%w: profile %q", ErrNoKernel, m.Profile.ID)
	}
	var s Script
	if s.Kernel, err = Location(boot.Kernel, m.BaseURL); err != nil {
		return Script{}, fmt.Errorf("profile %q: kernel: %w", m.Profile.ID, err)
	}
	// Names given with --name first, then file names where free.
	taken := map[string]bool{}
	parsed := make([]profile.Initrd, len(boot.Initrd))
	for i, raw := range boot.Initrd {
		in, err := profile.ParseInitrd(raw)
		if err != nil {
			return Script{}, fmt.Errorf("profile %q: initrd: %w", m.Profile.ID, err)
		}
		if in.Name != "" {
			if taken[strings.ToLower(in.Name)] {
				return Script{}, fmt.Errorf("%w: profile %q: --name %q given twice", ErrBadInitrdName, m.Profile.ID, in.Name)
			}
			taken[strings.ToLower(in.Name)] = true
		}
		parsed[i] = in
	}
	for i, in := range parsed {
		u, err := Location(in.Path, m.BaseURL)
		if err != nil {
			return Script{}, fmt.Errorf("profile %q: initrd: %w", m.Profile.ID, err)
		}
		name := in.Name
		if name == "" {
			name = in.FileName()
			for n := i; name == "" || taken[strings.ToLower(name)]; n++ {
				name = "initrd" + strconv.Itoa(n)
			}
			taken[strings.ToLower(name)] = true
		}
		s.Initrds = append(s.Initrds, Initrd{Name: name, URL: u})
	}
	at := -1
	for _, a := range boot.Args {
		if _, ok := profile.InitrdArg(a); ok {
			if at < 0 {
				at = len(s.Args)
			}
			continue
		}
		s.Args = append(s.Args, a)
	}
	if at < 0 {
		at = 0
	}
	named := make([]string, len(s.Initrds))
	for i, in := range s.Initrds {
		named[i] = "initrd=" + in.Name
	}
	s.Args = append(s.Args[:at:at], append(named, s.Args[at:]...)...)
	return s, nil
}

// Location turns a profile's kernel or initrd location into the URL iPXE
// fetches: a path ("/assets/vmlinuz") is appended to base when base is
// set (so the script works wherever it was fetched from, TFTP included),
// else left for iPXE to resolve against the script's own URL; a URL
// ("scheme://…") is kept. A relative path, a GRUB device path "(hd0)/…",
// a string with white space or NUL, or one starting with '-' (iPXE would
// read an option) is an error wrapping ErrBadLocation. Debian's iPXE
// (2019) has no https; other builds do, so https is not refused.
func Location(s, base string) (string, error) {
	switch {
	case s == "":
		return "", fmt.Errorf("%w: empty", ErrBadLocation)
	case strings.HasPrefix(s, "/"):
		if base != "" {
			s = strings.TrimSuffix(base, "/") + s
		}
	case strings.HasPrefix(s, "("):
		return "", fmt.Errorf("%w: %q: a GRUB device path", ErrBadLocation, s)
	default:
		i := strings.Index(s, "://")
		if i <= 0 || !validScheme(s[:i]) {
			return "", fmt.Errorf("%w: %q: want an absolute path (/…) or a URL", ErrBadLocation, s)
		}
	}
	if err := checkWord(s); err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrBadLocation, s, err)
	}
	return s, nil
}

func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// Render writes m's iPXE script: it prints which machine, group and
// profile it is, loads the kernel with its arguments, each initrd by
// name, and boots; each of those commands jumps on failure to FailLabel,
// which prints what failed and runs "exit 1". Values are written by Word
// (see the package documentation); nothing is written on error (see
// Build for the errors).
func Render(w io.Writer, m *profile.Machine) error {
	b, err := AppendScript(nil, m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// AppendScript is Render appending to a buffer; on error it returns dst
// unchanged.
func AppendScript(dst []byte, m *profile.Machine) ([]byte, error) {
	s, err := Build(m)
	if err != nil {
		return dst, err
	}
	return s.Append(dst, m)
}

// Append writes the script for m (m names the machine in messages) to
// dst. The error wraps ErrUnencodable when a location or argument cannot
// be written as words (Build's results always can).
func (s Script) Append(dst []byte, m *profile.Machine) ([]byte, error) {
	b := appendHeader(dst, m)
	var err error
	b = append(b, "echo "...)
	b = appendText(b, "metalboot: loading kernel "+s.Kernel)
	b = append(b, "\nkernel "...)
	if b, err = AppendWord(b, s.Kernel); err != nil {
		return dst, err
	}
	for _, a := range s.Args {
		// iPXE joins a command's words with single spaces into the
		// kernel's command line: an argument with white space (trusted
		// profile text) becomes its words.
		for i := 0; i < len(a); {
			for i < len(a) && isSpace(a[i]) {
				i++
			}
			j := i
			for j < len(a) && !isSpace(a[j]) {
				j++
			}
			if j == i {
				break
			}
			b = append(b, ' ')
			if b, err = AppendWord(b, a[i:j]); err != nil {
				return dst, err
			}
			i = j
		}
	}
	b = append(b, " || goto "+FailLabel+"\n"...)
	for _, in := range s.Initrds {
		b = append(b, "echo "...)
		b = appendText(b, "metalboot: loading initrd "+in.Name+" from "+in.URL)
		b = append(b, "\ninitrd --name "...)
		if b, err = AppendWord(b, in.Name); err != nil {
			return dst, err
		}
		b = append(b, ' ')
		if b, err = AppendWord(b, in.URL); err != nil {
			return dst, err
		}
		b = append(b, " || goto "+FailLabel+"\n"...)
	}
	b = append(b, "boot || goto "+FailLabel+"\n\n:"+FailLabel+"\necho "...)
	b = appendText(b, "metalboot: booting profile "+profileID(m)+" failed; returning to the firmware, which goes on with its next boot option")
	b = append(b, "\nexit 1\n"...)
	return b, nil
}

// RenderLocal writes a script for a machine that is already installed
// (see Handler.LocalBoot): it prints why and runs "exit 1", so that iPXE
// returns to the firmware with an error: a BIOS goes on with its next
// boot device (the disk), UEFI firmware with its next boot option (the
// installed system's; on success it would stop at its boot menu).
func RenderLocal(w io.Writer, m *profile.Machine) error {
	_, err := w.Write(AppendLocalScript(nil, m))
	return err
}

// AppendLocalScript is RenderLocal appending to a buffer.
func AppendLocalScript(dst []byte, m *profile.Machine) []byte {
	b := appendHeader(dst, m)
	b = append(b, "echo "...)
	b = appendText(b, "metalboot: installed; returning to the firmware to boot the next boot option (local disk)")
	return append(b, "\nexit 1\n"...)
}

// appendHeader writes the magic line, a comment and the machine's
// description.
func appendHeader(b []byte, m *profile.Machine) []byte {
	b = append(b, "#!ipxe\n# metalboot: generated for one machine, do not edit\necho metalboot: "...)
	if m != nil && !m.MAC.IsZero() && m.Group != nil && m.Profile != nil && plainText(m.Hostname) && plainText(m.Group.ID) && plainText(m.Profile.ID) {
		// The usual case, without building the description first.
		b = append(b, "machine "...)
		b = appendMAC(b, m.MAC)
		if m.Hostname != "" {
			b = append(b, " ("...)
			b = append(b, m.Hostname...)
			b = append(b, ')')
		}
		b = append(b, ", group "...)
		b = append(b, m.Group.ID...)
		b = append(b, ", profile "...)
		b = append(b, m.Profile.ID...)
		return append(b, '\n')
	}
	b = appendText(b, describe(m))
	return append(b, '\n')
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

// plainText reports whether s is written as it is by appendText: letters,
// digits and . _ - : only.
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

func profileID(m *profile.Machine) string {
	if m == nil || m.Profile == nil {
		return "(none)"
	}
	return m.Profile.ID
}

// describe names a machine in logs and messages.
func describe(m *profile.Machine) string {
	if m == nil {
		return "unknown machine"
	}
	var b strings.Builder
	b.WriteString("machine ")
	if m.MAC.IsZero() {
		b.WriteString("without MAC")
	} else {
		b.WriteString(m.MAC.String())
	}
	if m.Hostname != "" {
		b.WriteString(" (" + m.Hostname + ")")
	}
	if m.Group != nil {
		b.WriteString(", group " + m.Group.ID)
	}
	if m.Profile != nil {
		b.WriteString(", profile " + m.Profile.ID)
	}
	return b.String()
}

// Check builds, for every group of inv, the iPXE script of the group's
// sample machine (profile.Inventory.SampleMachine) and returns a problem
// for each group whose profile iPXE cannot boot: a location it cannot
// fetch (ErrBadLocation), an initrd entry it cannot read
// (profile.ErrBadInitrd) or two initrds with one --name
// (ErrBadInitrdName). A profile without kernel is no problem. Run it when
// an inventory loads, so that such a profile is reported with its file,
// not answered at boot (the Handler answers 404 with the reason).
func Check(inv *profile.Inventory) []profile.LoaderProblem {
	var out []profile.LoaderProblem
	for _, g := range inv.Groups() {
		m := inv.SampleMachine(g)
		if m.Profile == nil {
			continue
		}
		if _, err := AppendScript(nil, m); err != nil && !errors.Is(err, ErrNoKernel) {
			out = append(out, profile.LoaderProblem{Loader: "iPXE", Group: g, Profile: m.Profile, Err: err})
		}
	}
	return out
}
