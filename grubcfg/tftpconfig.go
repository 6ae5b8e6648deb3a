package grubcfg

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/tftpsrv"
)

// ErrNeedsHTTP is wrapped (together with ErrUnsupportedURL) by the error
// for a kernel or initrd location that a GRUB without HTTP cannot load
// (Options.TFTP): a path or URL outside the tree served over TFTP too.
var ErrNeedsHTTP = errors.New("needs GRUB's http module")

// DefaultTFTPDir is TFTPFiles.Dir's default: labserver serves its assets
// directory at /assets/ over HTTP and at assets/ over TFTP.
const DefaultTFTPDir = "assets"

// TFTPFiles says where a GRUB without HTTP finds over TFTP what a profile
// names as an HTTP location: the tree served at "/<Dir>/" over HTTP is
// served at "<Dir>/" over TFTP as well (labserver mounts its assets
// directory there with tftpsrv.Mount). Locations map as follows:
//
//	/assets/vmlinuz                      → (tftp)/assets/vmlinuz
//	http://<HTTPHost>/assets/vmlinuz     → (tftp)/assets/vmlinuz
//	tftp://10.0.0.1/boot/vmlinuz         → (tftp,10.0.0.1)/boot/vmlinuz (as FilePath)
//	(hd0,gpt2)/boot/vmlinuz              → unchanged (a GRUB device path)
//
// "(tftp)" is the server GRUB booted from ($net_default_server, DHCP's
// next-server). Any other path or http URL (another server, a query
// string, a path outside Dir, an "(http,…)" device) is an error wrapping
// ErrNeedsHTTP and ErrUnsupportedURL; https is ErrUnsupportedURL as
// always.
type TFTPFiles struct {
	// Dir is the directory served over both protocols; "" means
	// DefaultTFTPDir. It must be a clean relative path of
	// [A-Za-z0-9._-] elements.
	Dir string
	// HTTPHost is the HTTP server's host and port as profiles name it in
	// URLs (base_url's "10.99.0.1:8080"); URLs of other hosts are not
	// rewritten. "": only absolute paths are.
	HTTPHost string
}

func (t *TFTPFiles) dir() string {
	if t.Dir == "" {
		return DefaultTFTPDir
	}
	return t.Dir
}

func (t *TFTPFiles) validate() error {
	if t == nil {
		return nil
	}
	d := t.dir()
	if !isRelPath(d) {
		return fmt.Errorf("%w: TFTP.Dir %q: want a clean relative path", ErrBadOption, d)
	}
	for _, c := range d {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._/-", c)) {
			return fmt.Errorf("%w: TFTP.Dir %q: character %q (use [A-Za-z0-9._/-])", ErrBadOption, d, c)
		}
	}
	if t.HTTPHost != "" {
		if err := checkHostPort(t.HTTPHost); err != nil {
			return fmt.Errorf("%w: TFTP.HTTPHost %q: %v", ErrBadOption, t.HTTPHost, err)
		}
	}
	return nil
}

// FilePath is FilePath for a GRUB without HTTP: it turns a profile's
// kernel or initrd location into the file GRUB opens over TFTP, as the
// type's documentation says.
func (t *TFTPFiles) FilePath(s string) (string, error) {
	needs := func(why string) error {
		return fmt.Errorf("%w: %w: %q: %s", ErrUnsupportedURL, ErrNeedsHTTP, s, why)
	}
	dir := "/" + t.dir() + "/"
	switch {
	case s == "":
		return "", fmt.Errorf("%w: empty", ErrBadPath)
	case s[0] == '/':
		if strings.ContainsRune(s, '?') {
			return "", needs("a query string reaches only an HTTP server")
		}
		if !strings.HasPrefix(s, dir) || path.Clean(s) != s {
			return "", needs("only " + dir + "… is served over TFTP too")
		}
		return "(tftp)" + s, nil
	case s[0] == '(':
		p, err := FilePath(s)
		if err != nil {
			return "", err
		}
		if dev := strings.ToLower(p[1:strings.IndexByte(p, ')')]); dev == "http" || strings.HasPrefix(dev, "http,") {
			return "", needs("an (http) device")
		}
		return p, nil
	}
	p, err := FilePath(s)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(p, "(tftp,") {
		return p, nil
	}
	// An http URL: FilePath made it "(http,HOST)PATH".
	u, _ := url.Parse(s) // FilePath parsed it
	if t.HTTPHost == "" || !strings.EqualFold(withPort(u.Host), withPort(t.HTTPHost)) {
		return "", needs("an HTTP server other than this one (" + t.HTTPHost + ")")
	}
	if u.RawQuery != "" {
		return "", needs("a query string reaches only an HTTP server")
	}
	// TFTP names are not percent-encoded: the file the HTTP server would
	// serve for the URL is the decoded path.
	p = u.Path
	if !strings.HasPrefix(p, dir) || path.Clean(p) != p {
		return "", needs("only " + dir + "… is served over TFTP too")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return "", fmt.Errorf("%w: %q: control character in the path", ErrBadPath, s)
		}
	}
	return "(tftp)" + p, nil
}

// CheckTFTP is Check for machines whose GRUB has no HTTP (Secure Boot):
// for every group include accepts (nil: every group), it renders the
// group's sample machine with Options{TFTP: &files} and returns a problem
// (Loader "GRUB over TFTP") for each profile that cannot be booted that
// way, e.g. a kernel on another HTTP server (ErrNeedsHTTP). Run it when
// an inventory loads, for the groups that boot through shim, so that such
// a profile is reported with its file, not answered at boot.
func CheckTFTP(inv *profile.Inventory, files TFTPFiles, include func(*profile.Group) bool) []profile.LoaderProblem {
	var out []profile.LoaderProblem
	opts := Options{TFTP: &files}
	for _, g := range inv.Groups() {
		if include != nil && !include(g) {
			continue
		}
		m := inv.SampleMachine(g)
		if m.Profile == nil {
			continue
		}
		if _, err := AppendConfig(nil, m, opts); err != nil && !errors.Is(err, ErrNoKernel) {
			out = append(out, profile.LoaderProblem{Loader: LoaderNameTFTP, Group: g, Profile: m.Profile, Err: err})
		}
	}
	return out
}

// LoaderNameTFTP is the Loader of CheckTFTP's problems.
const LoaderNameTFTP = "GRUB over TFTP"

// TFTPConfigHandler serves the per-machine configuration over TFTP, for
// GRUB images without HTTP (FirstStage.TFTP makes the first stage ask for
// it): a read request for "<Path>?<query>" — "grub?mac=52:54:00:12:34:56"
// as GRUB sends "(tftp)/grub?mac=${net_default_mac}" — is answered by
// Handler as if it were "GET /grub?<query>" from the TFTP client's
// address, by a GRUB: the same resolution (profile.Resolver), rendering,
// local boot, OnServe hook and error answers (an echo of the reason, which
// GRUB prints) as /grub. Give Handler Options with TFTP set, so that
// kernel and initrds come over TFTP too. Every other name is
// tftpsrv.ErrNotHandled, so a chain (tftpsrv.Chain) or the server's file
// system answers it.
type TFTPConfigHandler struct {
	// Handler renders; required. It is not the /grub handler itself: its
	// Options.TFTP differ.
	Handler *Handler
	// Path is the configuration's path, as FirstStage.Path; "" means
	// DefaultPath.
	Path string
}

// tftpUserAgent is the User-Agent of the request a TFTPConfigHandler
// hands its Handler: a GRUB, so errors come back as echo commands.
const tftpUserAgent = "GRUB (metalboot TFTP)"

// maxTFTPConfig bounds a configuration served over TFTP.
const maxTFTPConfig = 1 << 20

// ServeTFTP implements tftpsrv.Handler.
func (h *TFTPConfigHandler) ServeTFTP(ctx context.Context, req *tftpsrv.Request) ([]byte, error) {
	p := h.Path
	if p == "" {
		p = DefaultPath
	}
	name, query, ok := strings.Cut(req.Filename, "?")
	if !ok || "/"+name != p {
		return nil, tftpsrv.ErrNotHandled
	}
	if h.Handler == nil {
		return nil, errors.New("grubcfg: TFTPConfigHandler without Handler")
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return nil, err
	}
	r.URL = &url.URL{Path: p, RawQuery: query}
	r.RequestURI = p + "?" + query
	r.RemoteAddr = req.Client.String()
	r.Header.Set("User-Agent", tftpUserAgent)
	w := &bufferWriter{header: http.Header{}}
	h.Handler.ServeHTTP(w, r)
	if w.overflow {
		return nil, fmt.Errorf("grubcfg: configuration over %d bytes", maxTFTPConfig)
	}
	return w.body, nil
}

// bufferWriter is the http.ResponseWriter of a TFTPConfigHandler: it keeps
// the body (of any status: an error is an echo GRUB prints).
type bufferWriter struct {
	header   http.Header
	code     int
	body     []byte
	overflow bool
}

func (w *bufferWriter) Header() http.Header { return w.header }

func (w *bufferWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *bufferWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if len(w.body)+len(b) > maxTFTPConfig {
		w.overflow = true
		return 0, errors.New("grubcfg: configuration too long for TFTP")
	}
	w.body = append(w.body, b...)
	return len(b), nil
}
