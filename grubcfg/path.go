package grubcfg

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Errors returned by rendering. They wrap the offending value's context;
// test with errors.Is.
var (
	// ErrUnsupportedURL: a kernel or initrd URL GRUB cannot fetch (https,
	// user info, an unknown scheme).
	ErrUnsupportedURL = errors.New("unsupported URL for GRUB")
	// ErrBadPath: a kernel or initrd path GRUB cannot open (empty,
	// relative, or a malformed "(device)/path").
	ErrBadPath = errors.New("bad path for GRUB")
	// ErrNoKernel: the machine's profile has no boot.kernel, so there is
	// nothing to network-boot (e.g. an "installed" profile).
	ErrNoKernel = errors.New("profile has no boot kernel")
	// ErrBadOption: an invalid FirstStage or Options field.
	ErrBadOption = errors.New("bad grubcfg option")
)

// FilePath turns a profile's kernel or initrd location into the file name
// GRUB opens:
//
//	/assets/vmlinuz                     → /assets/vmlinuz (on $root, the HTTP server)
//	http://10.0.0.1:8080/assets/vmlinuz → (http,10.0.0.1:8080)/assets/vmlinuz
//	tftp://10.0.0.1/grub/vmlinuz        → (tftp,10.0.0.1)/grub/vmlinuz
//	(hd0,gpt2)/boot/vmlinuz             → unchanged (a GRUB device path)
//
// https URLs are rejected (GRUB 2.06 has no TLS), as are user info, relative
// paths and hosts with characters GRUB's device syntax cannot carry. The
// query string of a URL is kept; GRUB sends it as is.
func FilePath(s string) (string, error) {
	switch {
	case s == "":
		return "", fmt.Errorf("%w: empty", ErrBadPath)
	case s[0] == '/':
		return s, nil
	case s[0] == '(':
		end := strings.IndexByte(s, ')')
		if end < 2 || (end+1 < len(s) && s[end+1] != '/') {
			return "", fmt.Errorf("%w: %q: want (device)/path", ErrBadPath, s)
		}
		return s, nil
	}
	i := strings.Index(s, "://")
	if i < 0 {
		return "", fmt.Errorf("%w: %q: want an absolute path (/…) or an http:// URL", ErrBadPath, s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrUnsupportedURL, s, err)
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "http", "tftp":
	case "https":
		return "", fmt.Errorf("%w: %q: GRUB's HTTP client has no TLS; serve boot files over http", ErrUnsupportedURL, s)
	default:
		return "", fmt.Errorf("%w: %q: scheme %q (want http or tftp)", ErrUnsupportedURL, s, u.Scheme)
	}
	if u.User != nil {
		return "", fmt.Errorf("%w: %q: user info in URL", ErrUnsupportedURL, s)
	}
	if u.Opaque != "" {
		return "", fmt.Errorf("%w: %q: opaque URL", ErrUnsupportedURL, s)
	}
	if err := checkHostPort(u.Host); err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrUnsupportedURL, s, err)
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		if scheme == "tftp" {
			return "", fmt.Errorf("%w: %q: query string on a tftp URL", ErrUnsupportedURL, s)
		}
		p += "?" + u.RawQuery
	}
	return "(" + scheme + "," + u.Host + ")" + p, nil
}

// checkHostPort accepts "host", "host:port" and "[v6]:port" with host
// characters that are safe inside a GRUB device name "(http,HOST)".
func checkHostPort(hp string) error {
	if hp == "" {
		return errors.New("no host")
	}
	host, port := hp, ""
	if h, p, err := net.SplitHostPort(hp); err == nil {
		host, port = h, p
	} else if strings.Count(hp, ":") > 0 && !strings.HasPrefix(hp, "[") {
		return fmt.Errorf("host %q: %v", hp, err)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return errors.New("no host")
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '_') {
			return fmt.Errorf("host %q: character %q", host, c)
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q: want 1-65535", port)
		}
	}
	return nil
}
