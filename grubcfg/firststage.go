package grubcfg

import (
	"fmt"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
)

// Serial configures GRUB's serial terminal.
type Serial struct {
	// Unit is the serial port (0 = COM1/ttyS0).
	Unit int
	// Speed in baud; 0 means 115200.
	Speed int
	// EFI also enables GRUB's serial terminal on EFI. Off by default:
	// UEFI firmware usually mirrors its console to the serial port itself
	// (measured with OVMF), and GRUB's own serial terminal would print
	// everything twice. BIOS GRUB needs it to print on a serial console.
	EFI bool
}

func (s *Serial) validate() error {
	if s == nil {
		return nil
	}
	if s.Unit < 0 || s.Unit > 15 {
		return fmt.Errorf("%w: serial unit %d: want 0-15", ErrBadOption, s.Unit)
	}
	if s.Speed < 0 || s.Speed > 4000000 {
		return fmt.Errorf("%w: serial speed %d", ErrBadOption, s.Speed)
	}
	return nil
}

// FailAction is what the first stage does when fetching the machine's
// configuration fails (configfile returns silently on an HTTP error).
type FailAction int

const (
	// FailPrompt prints the reason and leaves GRUB's prompt for an operator.
	FailPrompt FailAction = iota
	// FailExit prints the reason, waits FirstStage.Timeout seconds and
	// exits GRUB, so the firmware tries its next boot option (often the
	// local disk).
	FailExit
	// FailReboot prints the reason, waits FirstStage.Timeout seconds and
	// reboots, to try the network boot again.
	FailReboot
)

// DefaultPath is the HTTP path of the per-machine configuration.
const DefaultPath = "/grub"

// FirstStage is the grub.cfg GRUB reads right after its network image
// (over TFTP, or over HTTP for UEFI HTTP boot). It loads GRUB's network
// modules, sets $root to the HTTP server and loads the machine's own
// configuration from Path?mac=<MAC>&arch=<CPU> (GRUB's $grub_cpu).
type FirstStage struct {
	// HTTPAddr is the HTTP server as GRUB reaches it: "10.99.0.1:8080",
	// "deploy.lab:8080", or a host alone for port 80. Required.
	HTTPAddr string
	// Path is the per-machine configuration's path; "" means DefaultPath.
	// It must be absolute and use only [A-Za-z0-9._/-].
	Path string
	// MAC, when set, pins the configuration to one machine (for the
	// grub.cfg-01-<mac> name GRUB asks first): the request carries this MAC
	// literally instead of GRUB's $net_default_mac.
	MAC hwaddr.MAC
	// Serial, when set, turns GRUB's serial terminal on (BIOS; EFI too if
	// Serial.EFI).
	Serial *Serial
	// OnFailure is what happens when the configuration cannot be fetched.
	OnFailure FailAction
	// Timeout is how many seconds the failure message stays before
	// OnFailure acts (FailExit, FailReboot); 0 means 10.
	Timeout int
	// TFTP makes the configuration work for GRUB images without HTTP too:
	// Debian's signed GRUB (the Secure Boot chain, shim → grubx64.efi)
	// has no http module built in and, locked down, loads none, yet reads
	// the same grub.cfg as grub-mknetdir's image. When GRUB is locked
	// down ($lockdown is "y") or "insmod http" fails, the first stage
	// loads the machine's configuration over TFTP instead, from the server
	// GRUB came from: "(tftp)<Path>?mac=<MAC>", which [TFTPConfigHandler]
	// answers with the same configuration /grub would, its kernel and
	// initrds over TFTP (Options.TFTP). Off, the output is the HTTP-only
	// first stage.
	TFTP bool
}

func (f FirstStage) path() (string, error) {
	p := f.Path
	if p == "" {
		p = DefaultPath
	}
	if p[0] != '/' || path.Clean(p) != p {
		return "", fmt.Errorf("%w: path %q: want a clean absolute path", ErrBadOption, p)
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._/-", c)) {
			return "", fmt.Errorf("%w: path %q: character %q (use [A-Za-z0-9._/-])", ErrBadOption, p, c)
		}
	}
	return p, nil
}

// Render returns the first-stage grub.cfg, e.g. for HTTPAddr
// "10.99.0.1:8080" with a serial console:
//
//	insmod net
//	insmod http
//	if [ "$grub_platform" = "efi" ]; then
//	  insmod efinet
//	else
//	  serial --unit=0 --speed=115200
//	  terminal_input serial console
//	  terminal_output serial console
//	fi
//	set root='(http,10.99.0.1:8080)'
//	echo 'metalboot: loading http://10.99.0.1:8080/grub?mac='"${net_default_mac}&arch=${grub_cpu}"
//	configfile "/grub?mac=${net_default_mac}&arch=${grub_cpu}"
//	echo …explains the failure…
func (f FirstStage) Render() ([]byte, error) {
	if f.HTTPAddr == "" {
		return nil, fmt.Errorf("%w: HTTPAddr is required", ErrBadOption)
	}
	if err := checkHostPort(f.HTTPAddr); err != nil {
		return nil, fmt.Errorf("%w: HTTPAddr %q: %v", ErrBadOption, f.HTTPAddr, err)
	}
	p, err := f.path()
	if err != nil {
		return nil, err
	}
	if err := f.Serial.validate(); err != nil {
		return nil, err
	}
	if f.OnFailure < FailPrompt || f.OnFailure > FailReboot {
		return nil, fmt.Errorf("%w: OnFailure %d", ErrBadOption, f.OnFailure)
	}
	timeout := f.Timeout
	if timeout == 0 {
		timeout = 10
	}
	if timeout < 0 || timeout > 86400 {
		return nil, fmt.Errorf("%w: Timeout %d", ErrBadOption, f.Timeout)
	}

	b := make([]byte, 0, 1024)
	b = append(b, "# metalboot first stage: generated, do not edit\n"...)
	if f.TFTP {
		// A locked-down GRUB refuses every module: do not fetch http.mod
		// just to have it refused.
		b = append(b, "insmod net\nset metalboot_http=n\nif [ \"$lockdown\" != \"y\" ]; then\n  if insmod http; then\n    set metalboot_http=y\n  fi\nfi\n"...)
	} else {
		b = append(b, "insmod net\ninsmod http\n"...)
	}
	b = append(b, "if [ \"$grub_platform\" = \"efi\" ]; then\n  insmod efinet\n"...)
	if f.Serial != nil && f.Serial.EFI {
		b = appendSerial(b, f.Serial, "  ")
	}
	if f.Serial != nil {
		b = append(b, "else\n"...)
		b = appendSerial(b, f.Serial, "  ")
	}
	b = append(b, "fi\n"...)
	indent := ""
	if f.TFTP {
		b = append(b, "if [ \"$metalboot_http\" = \"y\" ]; then\n"...)
		indent = "  "
	}
	root := "(http," + f.HTTPAddr + ")"
	b = append(b, indent+"set root="...)
	b = AppendQuote(b, root)
	b = append(b, '\n')

	url := "http://" + f.HTTPAddr + p + "?mac="
	// macWord is the rest of the query as the request carries it, as GRUB
	// words: the MAC (GRUB's variable, or the pinned one) and arch=,
	// GRUB's $grub_cpu (i386 on BIOS, x86_64, arm64), which the server
	// matches as profile.KeyArch so one group can send each architecture
	// its own kernel. The variables stand in double quotes (the measured
	// form; p holds no character special inside double quotes, and '&' is
	// not special there).
	var macWord string
	if f.MAC.IsZero() {
		macWord = "\"${net_default_mac}&arch=${grub_cpu}\""
	} else {
		macWord = Quote(f.MAC.String()+"&arch=") + "\"${grub_cpu}\""
	}
	b = appendLoad(b, indent, url, "", p, macWord, f.MAC)
	if f.TFTP {
		b = append(b, "else\n"...)
		b = appendLoad(b, indent, "(tftp)"+p+"?mac=", "(tftp)", p, macWord, f.MAC)
		b = append(b, "fi\n"...)
	}
	switch f.OnFailure {
	case FailExit:
		b = append(b, "echo "...)
		b = AppendQuote(b, "metalboot: returning to the firmware in "+strconv.Itoa(timeout)+" s")
		b = append(b, "\nsleep "+strconv.Itoa(timeout)+"\nexit\n"...)
	case FailReboot:
		b = append(b, "echo "...)
		b = AppendQuote(b, "metalboot: rebooting in "+strconv.Itoa(timeout)+" s")
		b = append(b, "\nsleep "+strconv.Itoa(timeout)+"\nreboot\n"...)
	}
	return b, nil
}

// appendLoad writes the echo, the configfile command that loads the
// machine's configuration from dev (a GRUB device such as "(tftp)", or ""
// for $root) and path p, and the echo that explains a failure (configfile
// returns silently when the fetch fails). what names the location in the
// messages, up to the MAC.
func appendLoad(b []byte, indent, what, dev, p, macWord string, mac hwaddr.MAC) []byte {
	b = append(b, indent+"echo "...)
	b = AppendQuote(b, "metalboot: loading "+what)
	b = append(b, macWord+"\n"...)
	if mac.IsZero() {
		b = append(b, indent+"configfile \""+dev+p+"?mac=${net_default_mac}&arch=${grub_cpu}\"\n"...)
	} else {
		b = append(b, indent+"configfile "...)
		b = AppendQuote(b, dev+p+"?mac="+mac.String()+"&arch=")
		b = append(b, "\"${grub_cpu}\"\n"...)
	}
	b = append(b, indent+"echo "...)
	b = AppendQuote(b, "metalboot: could not load "+what)
	b = append(b, macWord+" "...)
	b = AppendQuote(b, "(is the server up? does this MAC match a group? the server log says why)")
	return append(b, '\n')
}

func appendSerial(b []byte, s *Serial, indent string) []byte {
	speed := s.Speed
	if speed == 0 {
		speed = 115200
	}
	b = append(b, indent+"serial --unit="+strconv.Itoa(s.Unit)+" --speed="+strconv.Itoa(speed)+"\n"...)
	b = append(b, indent+"terminal_input serial console\n"...)
	b = append(b, indent+"terminal_output serial console\n"...)
	return b
}

// FirstStageName reports whether name (a TFTP or HTTP path such as
// "grub/grub.cfg-01-52-54-00-12-34-56") is one of the first-stage
// configuration names GRUB 2.06 asks for, in this order:
//
//	<prefix>/grub.cfg-01-<MAC with dashes>
//	<prefix>/grub.cfg-<IPv4 in upper-case hex>, then shortened one digit
//	at a time
//	<prefix>/grub.cfg
//
// For the first form it also returns the MAC, so a server can answer it
// with FirstStage{MAC: mac} (GRUB then stops probing); for the others mac
// is zero. The name is untrusted (it comes from the network): the MAC part
// must be exactly six pairs of hexadecimal digits separated by '-', and
// what is returned is the parsed MAC, which a FirstStage renders in
// canonical form inside GRUB quotes. The directory part is not checked: it is GRUB's prefix, which
// the server chose when it made GRUB's image.
func FirstStageName(name string) (mac hwaddr.MAC, ok bool) {
	base := name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		base = name[i+1:]
	}
	rest, found := strings.CutPrefix(base, "grub.cfg")
	if !found {
		return mac, false
	}
	if rest == "" {
		return mac, true
	}
	rest, found = strings.CutPrefix(rest, "-")
	if !found || rest == "" {
		return mac, false
	}
	if m, ok := strings.CutPrefix(rest, "01-"); ok {
		if v, ok := hyphenMAC(m); ok {
			return v, true
		}
	}
	if len(rest) > 8 {
		return mac, false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return mac, false
		}
	}
	return mac, true
}

// hyphenMAC parses exactly GRUB's form of a MAC in a configuration name:
// six pairs of hexadecimal digits (either case) separated by '-'. Nothing
// else is accepted (hwaddr.Parse would also take spaces around it and
// one-digit groups).
func hyphenMAC(s string) (hwaddr.MAC, bool) {
	var m hwaddr.MAC
	if len(s) != 17 {
		return m, false
	}
	for i := range m {
		if i > 0 && s[3*i-1] != '-' {
			return hwaddr.MAC{}, false
		}
		hi, ok1 := hexDigit(s[3*i])
		lo, ok2 := hexDigit(s[3*i+1])
		if !ok1 || !ok2 {
			return hwaddr.MAC{}, false
		}
		m[i] = hi<<4 | lo
	}
	return m, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// FirstStageNames lists, in GRUB 2.06's order, the names GRUB asks for
// under dir (e.g. "grub") for a machine with this MAC and IPv4 address;
// a zero MAC or an invalid or non-IPv4 address leaves those names out.
func FirstStageNames(dir string, mac hwaddr.MAC, ip netip.Addr) []string {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	if dir == "" {
		prefix = ""
	}
	var out []string
	if !mac.IsZero() {
		out = append(out, prefix+"grub.cfg-01-"+mac.Hyphen())
	}
	if ip.Is4() {
		a := ip.As4()
		h := strings.ToUpper(fmt.Sprintf("%02x%02x%02x%02x", a[0], a[1], a[2], a[3]))
		for n := len(h); n > 0; n-- {
			out = append(out, prefix+"grub.cfg-"+h[:n])
		}
	}
	return append(out, prefix+"grub.cfg")
}

// FirstStageHandler serves a first-stage configuration over HTTP, for
// UEFI HTTP boot (GET /grub.cfg or any name FirstStageName accepts, as the
// caller routes it). It renders f once: a bad FirstStage is an error here,
// at start-up, not when a machine boots. Requests whose path is a
// grub.cfg-01-<mac> name get the configuration pinned to that MAC.
func FirstStageHandler(f FirstStage) (http.Handler, error) {
	body, err := f.Render()
	if err != nil {
		return nil, err
	}
	return &firstStageHandler{f: f, body: body}, nil
}

type firstStageHandler struct {
	f    FirstStage
	body []byte
}

func (h *firstStageHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body := h.body
	if mac, ok := FirstStageName(r.URL.Path); ok && !mac.IsZero() && h.f.MAC.IsZero() {
		pinned := h.f
		pinned.MAC = mac
		if b, err := pinned.Render(); err == nil {
			body = b
		}
	}
	writeConfig(w, body)
}

func writeConfig(w http.ResponseWriter, body []byte) {
	hd := w.Header()
	// Direct map writes of shared, never modified values: canonical keys,
	// no allocation per response.
	hd["Content-Type"] = hdrTextPlain
	hd["Content-Length"] = []string{strconv.Itoa(len(body))}
	hd["Cache-Control"] = hdrNoStore
	hd["X-Content-Type-Options"] = hdrNoSniff
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

var (
	hdrTextPlain = []string{"text/plain; charset=utf-8"}
	hdrNoStore   = []string{"no-store"}
	hdrNoSniff   = []string{"nosniff"}
)
