package ipxe

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/internal/files"
)

// BootParams are the iPXE settings the boot script reports to /ipxe, as
// query parameters: matchbox's set (uuid, mac, domain, hostname, serial,
// arch). Each is URI-encoded by iPXE (":uristring"; mac as
// "52-54-00-…", which profile.ParseQuery reads as the MAC).
var BootParams = []struct{ Name, Setting string }{
	{"uuid", "${uuid}"},
	{"mac", "${mac:hexhyp}"},
	{"domain", "${domain:uristring}"},
	{"hostname", "${hostname:uristring}"},
	{"serial", "${serial:uristring}"},
	{"arch", "${buildarch:uristring}"},
}

// BootScript returns the script matchbox serves at /boot.ipxe and
// /boot.ipxe.0, which a DHCP server hands to iPXE clients: it fetches
// <baseURL>/ipxe with the machine's attributes (BootParams) and runs the
// script it gets. The attributes iPXE reads from the machine itself
// (domain, hostname, serial) may hold characters a query value may not
// (an SMBIOS serial "To be filled by O.E.M.": /ipxe answers 400), so when
// the first fetch fails the script asks again with uuid, mac and arch
// only; when that fails too, or the machine's script fails, it prints so
// and runs "exit 1" (back to the firmware, which goes on with its next
// boot option). With baseURL "" the URL is relative ("ipxe?…"), resolved
// by iPXE against the URL the boot script came from, as matchbox writes
// it; an absolute baseURL also works when the boot script came over
// TFTP. baseURL must be one word iPXE does not expand (see Literal).
func BootScript(baseURL string) ([]byte, error) {
	base := strings.TrimSuffix(baseURL, "/")
	if base != "" {
		if _, err := Literal(base); err != nil {
			return nil, fmt.Errorf("ipxe: boot script base URL: %w", err)
		}
		base += "/"
	}
	url := func(names ...string) string {
		var q []string
		for _, p := range BootParams {
			for _, n := range names {
				if n == p.Name {
					q = append(q, p.Name+"="+p.Setting)
				}
			}
		}
		return base + "ipxe?" + strings.Join(q, "&")
	}
	all := url("uuid", "mac", "domain", "hostname", "serial", "arch")
	short := url("uuid", "mac", "arch")
	var b []byte
	b = append(b, "#!ipxe\n# metalboot: report this machine's attributes, then run its own script\n"...)
	b = append(b, "imgfetch --name metalboot "+all+" || imgfetch --name metalboot "+short+" || goto "+FailLabel+"\n"...)
	b = append(b, "imgexec metalboot || goto "+FailLabel+"\n\n:"+FailLabel+"\necho "...)
	b = appendText(b, "metalboot: no network boot from "+base+"ipxe for this machine (the server's /machines page says why); returning to the firmware")
	b = append(b, "\nexit 1\n"...)
	return b, nil
}

// BootHandler serves BootScript(baseURL) as text/plain, for GET and HEAD
// (405 otherwise), at /boot.ipxe and /boot.ipxe.0; onServe, when set, is
// called after a GET was answered (labserver's timeline). It returns an
// error when baseURL cannot be written (see BootScript).
func BootHandler(baseURL string, onServe func(*http.Request)) (http.Handler, error) {
	body, err := BootScript(baseURL)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		writeScript(w, body)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
			if onServe != nil {
				onServe(r)
			}
		}
	}), nil
}

// writeScript writes the headers of a script answer.
func writeScript(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
}

// DebianDir is where Debian's ipxe package installs its binaries
// (undionly.kpxe, ipxe.efi, …).
const DebianDir = "/usr/lib/ipxe"

// InstallBinaries copies the iPXE binaries firmware is handed when it is
// to boot with iPXE but does not run it yet from srcDir (DebianDir when
// "") into the TFTP root dir, where dhcpsrv.DefaultIPXEFiles points the
// firmware: ipxe/undionly.kpxe (BIOS, over the NIC's PXE stack) and
// ipxe/ipxe.efi (UEFI x86-64). It returns the paths made (relative to
// dir) and, for a binary srcDir lacks, why it was skipped ("apt-get
// install ipxe"); an error only for a copy that failed.
func InstallBinaries(dir, srcDir string) (made, skipped []string, err error) {
	if srcDir == "" {
		srcDir = DebianDir
	}
	seen := map[string]bool{}
	for _, arch := range slices.Sorted(maps.Keys(dhcpsrv.DefaultIPXEFiles)) {
		rel := dhcpsrv.DefaultIPXEFiles[arch]
		if seen[rel] {
			continue
		}
		seen[rel] = true
		src := filepath.Join(srcDir, path.Base(rel))
		if _, err := os.Stat(src); err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %s missing (apt-get install ipxe)", rel, src))
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if err := files.CopyAtomic(src, dst); err != nil {
			return made, skipped, fmt.Errorf("ipxe: %w", err)
		}
		made = append(made, rel)
	}
	return made, skipped, nil
}
