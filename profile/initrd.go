package profile

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadInitrd is wrapped by ParseInitrd's errors: a boot.initrd entry
// that neither GRUB nor iPXE can load as written.
var ErrBadInitrd = errors.New("bad initrd entry")

// Initrd is one entry of a profile's boot.initrd, in the forms matchbox
// documents: a location ("/assets/initrd.img", "http://…/initrd.img"),
// optionally preceded by iPXE's --name option ("--name main
// /assets/…-initramfs.x86_64.img", as in matchbox's Fedora CoreOS
// profiles).
type Initrd struct {
	// Name is the name the entry gives the initrd (--name), or "".
	Name string
	// Path is the location, as written.
	Path string
}

// ParseInitrd reads one rendered boot.initrd entry: a location, optionally
// preceded by iPXE's name option in any of the spellings iPXE's option
// parser takes ("--name NAME", "--name=NAME", "-n NAME"). Words are
// separated by white space, as iPXE splits them. A name must be 1 to 64
// letters, digits, '.', '_' or '-', not starting with '-' or '.': it is a
// file name the kernel's EFI stub opens (initrd=NAME) and a word of the
// kernel command line. Any other option, a second location or arguments
// after the location are errors wrapping ErrBadInitrd: GRUB has no
// equivalent for iPXE's other image options, and its initrd command
// takes paths only.
func ParseInitrd(s string) (Initrd, error) {
	if s != "" && s[0] != '-' && strings.IndexFunc(s, isIPXESpace) < 0 {
		return Initrd{Path: s}, nil // the usual case: one location
	}
	words := strings.FieldsFunc(s, isIPXESpace)
	var in Initrd
	for len(words) > 0 && strings.HasPrefix(words[0], "-") {
		w := words[0]
		var name string
		switch {
		case w == "--name" || w == "-n":
			if len(words) < 2 {
				return Initrd{}, fmt.Errorf("%w %q: %s without a name", ErrBadInitrd, s, w)
			}
			name, words = words[1], words[2:]
		case strings.HasPrefix(w, "--name="):
			name, words = strings.TrimPrefix(w, "--name="), words[1:]
		case strings.HasPrefix(w, "-n") && len(w) > 2:
			name, words = w[2:], words[1:]
		default:
			return Initrd{}, fmt.Errorf("%w %q: option %q: only --name is understood (GRUB has no equivalent for iPXE's other image options)", ErrBadInitrd, s, w)
		}
		if in.Name != "" {
			return Initrd{}, fmt.Errorf("%w %q: --name given twice", ErrBadInitrd, s)
		}
		if !ValidInitrdName(name) {
			return Initrd{}, fmt.Errorf("%w %q: name %q: want 1 to 64 letters, digits, '.', '_' or '-', not starting with '-' or '.'", ErrBadInitrd, s, name)
		}
		in.Name = name
	}
	switch len(words) {
	case 0:
		return Initrd{}, fmt.Errorf("%w %q: no location", ErrBadInitrd, s)
	case 1:
	default:
		return Initrd{}, fmt.Errorf("%w %q: words after the location %q (one location per entry; iPXE's initrd arguments are not supported)", ErrBadInitrd, s, words[0])
	}
	in.Path = words[0]
	return in, nil
}

// FileName is the name a boot loader that loads images by name (iPXE)
// gives this initrd when it has no --name: the last element of the
// location's path, without query string or fragment ("" when that is not
// a valid name, see ValidInitrdName).
func (in Initrd) FileName() string {
	if in.Name != "" {
		return in.Name
	}
	p := in.Path
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if i := strings.Index(p, "://"); i >= 0 {
		p = p[i+3:]
		if j := strings.IndexByte(p, '/'); j >= 0 {
			p = p[j:]
		} else {
			p = ""
		}
	}
	base := p[strings.LastIndexByte(p, '/')+1:] // iPXE's basename: "" after a trailing '/'
	if !ValidInitrdName(base) {
		return ""
	}
	return base
}

// ValidInitrdName reports whether s can name an initrd: 1 to 64 letters,
// digits, '.', '_' or '-', not starting with '-' or '.'.
func ValidInitrdName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '-' || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// InitrdArg reports whether a kernel argument is "initrd=NAME", the
// argument through which the kernel's EFI stub loads an initrd by file
// name from the device it was loaded from, and returns NAME.
func InitrdArg(arg string) (string, bool) {
	return strings.CutPrefix(arg, "initrd=")
}

// isIPXESpace is C's isspace, which iPXE splits command lines with.
func isIPXESpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// LoaderProblem is a profile that a boot loader cannot boot, found when an
// inventory is checked for that loader (grubcfg.Check, ipxe.Check): a
// location the loader cannot fetch, an initrd entry it has no form for.
// Whether it stops the load is the caller's choice (labserver: an error
// for the groups that boot with that loader, a warning otherwise).
type LoaderProblem struct {
	// Loader names the boot loader, e.g. "GRUB" or "iPXE".
	Loader string
	// Group is the group whose sample machine was rendered; Profile its
	// profile.
	Group   *Group
	Profile *Profile
	// Err is the renderer's error.
	Err error
}

// Error names the profile's file, the profile, the group and the loader.
func (p LoaderProblem) Error() string {
	return fmt.Sprintf("%s: profile %q (group %q) cannot be booted with %s: %v", orGo(p.Profile.Source), p.Profile.ID, p.Group.ID, p.Loader, p.Err)
}

// Unwrap returns Err.
func (p LoaderProblem) Unwrap() error { return p.Err }
