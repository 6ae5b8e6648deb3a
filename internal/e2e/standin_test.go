//go:build linux

package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/e2e"
	"github.com/metalboot/metalboot/internal/netns"
)

// requestLog records the stand-in HTTP server's requests.
type requestLog struct {
	mu    sync.Mutex
	reqs  []string // "<remote ip> <request URI>"
	first map[string]time.Time
}

func (r *requestLog) add(ip, uri string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, ip+" "+uri)
	if r.first == nil {
		r.first = map[string]time.Time{}
	}
	if _, ok := r.first[uri]; !ok {
		r.first[uri] = time.Now()
	}
}

// at is when uri was first requested.
func (r *requestLog) at(uri string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first[uri]
}

func (r *requestLog) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.reqs, "\n")
}

func (r *requestLog) has(ip, uri string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.reqs {
		if q == ip+" "+uri {
			return true
		}
	}
	return false
}

// standinIgnition is what the stand-in serves as a machine's config.
func standinIgnition(mac, stage string) string {
	return fmt.Sprintf(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hostname","contents":{"source":"data:,standin-%s-%s"}}]}}`,
		strings.ReplaceAll(mac, ":", ""), stage)
}

// TestStandInBoot proves the harness with real firmware and a stand-in
// server: dnsmasq (DHCP + TFTP, on the namespace's bridge only) and a Go HTTP
// server serving /grub, /assets and /ignition. One UEFI (OVMF) and one BIOS
// (SeaBIOS + iPXE ROM) machine boot concurrently from power-on to their
// printed Ignition config.
func TestStandInBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: boots QEMU machines; skipped with -short")
	}
	netns.Need(t, "dnsmasq")
	assets := e2e.Prepare(t, netDir)
	lab := e2e.NewLab(t)

	// Static first stage: dnsmasq cannot generate one.
	if err := os.WriteFile(filepath.Join(assets.TFTPRoot, filepath.Dir(filepath.Dir(assets.BootFiles.EFI)), "grub.cfg"),
		[]byte(e2e.FirstStageGrubCfg(e2e.ServerIP+":8080")), 0o644); err != nil {
		t.Fatal(err)
	}

	var reqs requestLog
	mux := http.NewServeMux()
	mux.Handle("/assets/", http.StripPrefix("/assets/", http.FileServer(http.Dir(assets.Dir))))
	mux.HandleFunc("/grub", func(w http.ResponseWriter, r *http.Request) {
		mac, err := hwaddr.Parse(r.URL.Query().Get("mac"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// The & must be quoted: it is a GRUB metacharacter.
		fmt.Fprintf(w, `echo "METALBOOT-GRUB-SECOND-STAGE %[2]s"
linux (http,%[1]s:8080)/assets/vmlinuz "metalboot.url=http://%[1]s:8080/ignition?mac=%[2]s&stage=standin" console=ttyS0
initrd (http,%[1]s:8080)/assets/initrd.cpio
boot
`, e2e.ServerIP, mac)
	})
	mux.HandleFunc("/ignition", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, standinIgnition(r.URL.Query().Get("mac"), r.URL.Query().Get("stage")))
	})
	ln, err := lab.Listen("tcp4", e2e.ServerIP+":8080")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, _ := strings.Cut(r.RemoteAddr, ":")
		reqs.add(ip, r.URL.RequestURI())
		mux.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dnsmasq := lab.Start("dnsmasq", "dnsmasq",
		"--conf-file=/dev/null", "--keep-in-foreground", "--log-facility=-", "--log-dhcp",
		"--user=root", "--group=root", "--pid-file=",
		"--port=0", "--interface="+e2e.BridgeName, "--bind-interfaces",
		"--dhcp-range=10.99.0.100,10.99.0.200,1h", "--no-ping",
		"--dhcp-leasefile="+filepath.Join(lab.Dir, "dnsmasq.leases"),
		"--dhcp-match=set:efi64,option:client-arch,7",
		"--dhcp-match=set:efi64,option:client-arch,9",
		"--dhcp-boot=tag:efi64,"+assets.BootFiles.EFI+",,"+e2e.ServerIP,
		"--dhcp-boot=tag:!efi64,"+assets.BootFiles.BIOS+",,"+e2e.ServerIP,
		"--dhcp-option=encap:175,176,1b", // iPXE: no ProxyDHCP wait
		"--enable-tftp", "--tftp-root="+assets.TFTPRoot,
	)

	machines := []struct {
		name string
		fw   e2e.Firmware
		mac  hwaddr.MAC
	}{
		{"uefi", e2e.UEFI, hwaddr.MustParse("52:54:00:99:00:01")},
		{"bios", e2e.BIOS, hwaddr.MustParse("52:54:00:99:00:02")},
	}
	vms := make([]*e2e.VM, len(machines))
	for i, m := range machines {
		tap := "tap" + m.name
		lab.Tap(tap)
		vms[i] = e2e.StartVM(t, lab.NS, e2e.VMConfig{
			Name: m.name, Firmware: m.fw, MAC: m.mac, Tap: tap, Dir: lab.Dir,
			Timeout: 150 * time.Second,
		})
	}
	e2e.DumpOnFailure(t, func() []*e2e.VM { return vms }, dnsmasq)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- stand-in HTTP requests ---\n%s", reqs.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 140*time.Second)
	defer cancel()
	res := e2e.WaitBoot(ctx, vms...)
	for i, r := range res {
		if r.Err != nil {
			t.Errorf("%s: %v", machines[i].name, r.Err)
			continue
		}
		d := reqs.at("/grub?mac=" + machines[i].mac.String()).Sub(r.VM.Started)
		t.Logf("%s: power-on → GET /grub %.1fs, → Ignition printed %.1fs, → powered off %.1fs",
			machines[i].name, d.Seconds(), r.Printed.Seconds(), r.Exited.Seconds())
	}
	if t.Failed() {
		t.FailNow()
	}

	log := dnsmasq.Output()
	for i, m := range machines {
		if got, want := res[i].Ignition, standinIgnition(m.mac.String(), "standin"); got != want {
			t.Errorf("%s: printed config %q, want %q", m.name, got, want)
		}
		// The firmware's lease and TFTP fetch, as dnsmasq logged them.
		ack := regexp.MustCompile(`DHCPACK\(` + e2e.BridgeName + `\) (10\.99\.0\.\d+) ` + m.mac.String())
		mm := ack.FindStringSubmatch(log)
		if mm == nil {
			t.Errorf("%s: no DHCPACK for %s in the dnsmasq log", m.name, m.mac)
			continue
		}
		ip := mm[1]
		boot := assets.BootFiles.BIOS
		if m.fw == e2e.UEFI {
			boot = assets.BootFiles.EFI
		}
		if !strings.Contains(log, "sent "+filepath.Join(assets.TFTPRoot, boot)+" to "+ip) {
			t.Errorf("%s: dnsmasq did not log sending %s to %s", m.name, boot, ip)
		}
		for _, uri := range []string{"/grub?mac=" + m.mac.String(), "/assets/vmlinuz", "/assets/initrd.cpio"} {
			if !reqs.has(ip, uri) {
				t.Errorf("%s: no HTTP request %s from %s", m.name, uri, ip)
			}
		}
		if !strings.Contains(reqs.String(), " /ignition?mac="+m.mac.String()+"&stage=standin") {
			t.Errorf("%s: the booted initrd did not fetch /ignition?mac=%s&stage=standin", m.name, m.mac)
		}
	}
}
