package ignition_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"

	"github.com/vincent-petithory/dataurl"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/ignition"
	"github.com/metalboot/metalboot/profile"
	"github.com/metalboot/metalboot/profile/demo"
)

// An installer config for Flatcar, generated in Go: the script it writes
// to /opt/installer.
func ExampleInstaller_Script() {
	in := ignition.Installer{
		Distro:             ignition.Flatcar,
		Disk:               "/dev/sdb",
		Channel:            "stable",
		Version:            "current",
		ImageBaseURL:       "http://172.22.10.2:8080/assets/flatcar",
		InstalledConfigURL: "http://172.22.10.2:8080/ignition?mac=00:30:48:fb:e2:44&os=installed",
	}
	script, err := in.Script()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(script)
	// Output:
	// #!/bin/bash
	// # Written by metalboot: installs Flatcar to /dev/sdb, then reboots.
	// set -euxo pipefail
	// curl --fail --silent --show-error --location --retry 10 --retry-delay 2 --retry-connrefused -o /tmp/ignition.json 'http://172.22.10.2:8080/ignition?mac=00:30:48:fb:e2:44&os=installed'
	// flatcar-install -d /dev/sdb -C stable -V current -i /tmp/ignition.json -b http://172.22.10.2:8080/assets/flatcar
	// udevadm settle
	// systemctl reboot
}

// The same for Fedora CoreOS, as validated Ignition JSON of the default
// spec version.
func ExampleInstaller_JSON() {
	in := ignition.Installer{
		Distro:             ignition.FCOS,
		Disk:               "/dev/sda",
		Stream:             "stable",
		InstalledConfigURL: "https://deploy.lab/ignition?mac=00:23:32:2f:40:3c&os=installed",
		SSHKeys:            []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAgrBiaSvGO9QZU/pD75++z0V6EwNHgcne8hDRJhVTis debug@demo.lab"},
	}
	raw, err := in.JSON()
	if err != nil {
		fmt.Println(err)
		return
	}
	version, _, err := ignition.Validate(raw)
	fmt.Println(version, err)
	// Output: 3.4.0 <nil>
}

// Serving /ignition for the demo inventory: the handler resolves the
// machine from the query, renders its profile's Butane template and serves
// the config as the spec version Butane emitted.
func ExampleHandler() {
	h := &ignition.Handler{
		OnServe: func(r *http.Request, m *profile.Machine) {
			if m.Attrs["os"] == "installed" {
				fmt.Println("installed config served to", m.MAC)
			}
		},
	}
	store, err := profile.OpenFS(demo.FS(), h.Check, nil) // broken templates fail here
	if err != nil {
		fmt.Println(err)
		return
	}
	h.Resolver = &profile.Resolver{Store: store, BaseURL: "http://172.22.10.2:8080"}
	mux := http.NewServeMux()
	mux.Handle("GET /ignition", h)

	for _, q := range []string{"mac=00:30:48:fb:e2:44", "mac=00:30:48:fb:e2:44&os=installed", "mac=nonsense"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/ignition?"+q, nil))
		if rec.Code != http.StatusOK {
			fmt.Print(rec.Code, " ", rec.Body)
			continue
		}
		var cfg struct {
			Ignition struct{ Version string }
			Storage  struct {
				Files []struct {
					Path     string
					Contents struct{ Source string }
				}
			}
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &cfg)
		fmt.Println(rec.Code, rec.Header().Get("Content-Type"), "spec", cfg.Ignition.Version)
		for _, f := range cfg.Storage.Files {
			du, _ := dataurl.DecodeString(f.Contents.Source)
			for _, line := range strings.Split(string(du.Data), "\n") {
				if strings.HasPrefix(line, "flatcar-install") || f.Path == "/etc/hostname" {
					fmt.Printf("  %s: %s\n", f.Path, line)
				}
			}
		}
	}
	// Output:
	// 200 application/json spec 3.3.0
	//   /opt/installer: flatcar-install -d /dev/sdb -C stable -V current -i /tmp/ignition.json -b http://172.22.10.2:8080/assets/flatcar
	// installed config served to 00:30:48:fb:e2:44
	// 200 application/json spec 3.3.0
	//   /etc/hostname: smpc.lab
	// 400 bad request: mac: invalid MAC address "nonsense": want 12 hex digits
}

// A Guard restricts each machine's config to the address that holds its
// lease; it gets the request's context, so a lookup in a networked lease
// store can honour the request's deadline. When it cannot decide it says
// no: the machine retries, and a config is never served to the wrong host.
func ExampleGuardFunc() {
	leases := map[hwaddr.MAC]netip.Addr{hwaddr.MustParse("00:30:48:fb:e2:44"): netip.MustParseAddr("172.22.10.54")}
	h := &ignition.Handler{Guard: ignition.GuardFunc(func(ctx context.Context, mac hwaddr.MAC, remote netip.Addr) bool {
		ip, ok := leases[mac] // a networked store would pass ctx on
		return ok && ip == remote && ctx.Err() == nil
	})}
	store, err := profile.OpenFS(demo.FS(), h.Check, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	h.Resolver = &profile.Resolver{Store: store, BaseURL: "http://172.22.10.2:8080"}
	for _, remote := range []string{"172.22.10.54:40000", "172.22.10.99:40000"} {
		r := httptest.NewRequest("GET", "/ignition?mac=00:30:48:fb:e2:44", nil)
		r.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		fmt.Println(remote, rec.Code)
	}
	// Output:
	// 172.22.10.54:40000 200
	// 172.22.10.99:40000 403
}
