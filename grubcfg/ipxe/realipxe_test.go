//go:build linux

package ipxe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv/hwaddr"
	"github.com/metalboot/metalboot/internal/e2e"
	"github.com/metalboot/metalboot/profile"
)

// ipxeLKRN is Debian's iPXE (package ipxe, 1.0.0+git-20190125) built as a
// Linux kernel: QEMU loads it with -kernel, and it runs the script given
// as -initrd at once, without DHCP or autoboot.
const ipxeLKRN = "/usr/lib/ipxe/ipxe.lkrn"

// runRealIPXE runs script in Debian's iPXE under QEMU (SeaBIOS, serial
// console through SeaBIOS's sercon: -machine graphics=off) until the
// console shows done, and returns the console with escape sequences
// removed. qemuArgs are added to QEMU's command line.
func runRealIPXE(t *testing.T, script, done string, qemuArgs ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not booting iPXE in QEMU")
	}
	e2e.NeedFirmware(t, e2e.BIOS)
	if _, err := os.Stat(ipxeLKRN); err != nil {
		t.Skipf("%s missing (apt-get install ipxe)", ipxeLKRN)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "script.ipxe")
	require.NoError(t, os.WriteFile(path, []byte(script), 0o644))
	args := append([]string{"-initrd", path, "-machine", "graphics=off"}, qemuArgs...)
	vm := e2e.StartVM(t, nil, e2e.VMConfig{Name: "ipxe", Firmware: e2e.BIOS, Kernel: ipxeLKRN, NoNetwork: true,
		MemoryMB: 256, Dir: dir, Timeout: 120 * time.Second, ExtraArgs: args, UUID: "a0b1c2d3-0000-4000-8000-00000000000a"})
	ctx, cancel := context.WithTimeout(context.Background(), 110*time.Second)
	defer cancel()
	_, err := vm.WaitConsole(ctx, func(s string) bool { return strings.Contains(s, done) })
	console := e2e.StripANSI(vm.Serial())
	require.NoError(t, err, "iPXE console:\n%s\nQEMU: %s", console, vm.Output())
	vm.Stop()
	return console
}

// TestRealIPXEWords: Debian's iPXE reads every hostile word as written by
// Word, in the middle of a line, at its end (a trailing '\' must not join
// the next line) and before "||", and runs no command of its own.
func TestRealIPXEWords(t *testing.T) {
	// Only ASCII text: the console shows other bytes as VGA glyphs (the
	// model covers them).
	var values []string
	for _, v := range append([]string{"reboot", "exit", "plain"}, hostileWords...) {
		if strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) < 0 {
			values = append(values, v)
		}
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	for i, v := range values {
		w, err := Word(v)
		require.NoError(t, err)
		fmt.Fprintf(&b, "echo B%d %s E%d\necho C%d %s\necho D%d\necho F%d %s || echo NOT-RUN\n", i, w, i, i, w, i, i, w)
	}
	b.WriteString("echo REAL-IPXE-DONE\n")
	console := runRealIPXE(t, b.String(), "REAL-IPXE-DONE")
	lines := strings.Split(console, "\n")
	has := func(want string) bool {
		for _, l := range lines {
			if l == want {
				return true
			}
		}
		return false
	}
	for i, v := range values {
		x, err := expandModel(v, nil)
		require.NoError(t, err)
		for _, want := range []string{
			fmt.Sprintf("B%d %s E%d", i, x, i),
			fmt.Sprintf("C%d %s", i, x),
			fmt.Sprintf("D%d", i),
			fmt.Sprintf("F%d %s", i, x),
		} {
			assert.True(t, has(want), "%q: console has no line %q", v, want)
		}
	}
	assert.NotContains(t, console, "NOT-RUN")
	assert.NotContains(t, console, "not found", "no word became a command")
}

// TestRealIPXEBoot runs the whole matchbox flow in Debian's iPXE on
// QEMU's user network: DHCP, the boot script from BootHandler, which
// reports the machine's attributes (its MAC, UUID, and the hostname and
// domain QEMU's DHCP gave it) to /ipxe; the Handler's script for a
// profile whose own words and the request's hostname mean something to
// iPXE; the kernel (a script that fails, so that iPXE comes back) and
// the initrds fetched. iPXE's imgstat then shows the kernel's command
// line: exactly the profile's arguments, each initrd's initrd=NAME among
// them, and the initrds under their names.
func TestRealIPXEBoot(t *testing.T) {
	inv, err := profile.New(profile.Data{
		Profiles: []profile.Profile{{ID: "evil", Boot: profile.Boot{
			Kernel: "/assets/k",
			Initrd: []string{"--name main /assets/initrd.img", "/assets/second.cpio"},
			Args:   []string{"#comment", "||", "&&", ";", "reboot", "a||b", `x\`, ":label", "-n", "--", "exit", "gw=${net0/gateway}", "h={{.Hostname}}", "initrd=main"},
		}}},
		Groups: []profile.Group{{ID: "g", Profile: "evil", Selector: map[string]string{"mac": "52:54:00:77:00:01"}}},
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := fmt.Sprintf("http://10.0.2.2:%d", ln.Addr().(*net.TCPAddr).Port)
	var mu sync.Mutex
	var queries []string
	boot, err := BootHandler(base, nil)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("GET /boot.ipxe", boot)
	h := &Handler{Resolver: &profile.Resolver{Store: inv, BaseURL: base}}
	mux.Handle("GET /ipxe", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /assets/k", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "#!ipxe\nexit 3\n") })
	mux.HandleFunc("GET /assets/initrd.img", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "first") })
	mux.HandleFunc("GET /assets/second.cpio", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "second") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	script := "#!ipxe\ndhcp || goto failed\nchain " + base + "/boot.ipxe || echo REAL-IPXE-CHAIN-RETURNED\nimgstat\necho REAL-IPXE-DONE\nexit\n:failed\necho REAL-IPXE-NO-DHCP\n"
	mac := hwaddr.MustParse("52:54:00:77:00:01")
	console := runRealIPXE(t, script, "REAL-IPXE-DONE",
		"-netdev", "user,id=n0,ipv6=off,hostname=n1,domainname=lab",
		"-device", "virtio-net-pci,netdev=n0,romfile=,mac="+mac.String())

	mu.Lock()
	require.Len(t, queries, 1, "the first fetch succeeded: %q", queries)
	assert.Equal(t, "uuid=a0b1c2d3-0000-4000-8000-00000000000a&mac=52-54-00-77-00-01&domain=lab&hostname=n1&serial=&arch=i386", queries[0])
	mu.Unlock()
	assert.Contains(t, console, "metalboot: machine 52:54:00:77:00:01 (n1), group g, profile evil")
	assert.Contains(t, console, "metalboot: booting profile evil failed; returning to the firmware")
	assert.Contains(t, console, "REAL-IPXE-CHAIN-RETURNED")
	assert.NotContains(t, console, "not found", "no word became a command")

	// sercon wraps at 80 columns: read imgstat's lines without breaks.
	flat := strings.NewReplacer("\r", "", "\n", "").Replace(console[strings.Index(console, "REAL-IPXE-CHAIN-RETURNED"):])
	m := regexp.MustCompile(`k : \d+ bytes \[script\] \[SELECTED\] "([^"]*)"`).FindStringSubmatch(flat)
	require.NotNil(t, m, "imgstat shows no selected kernel:\n%s", console)
	want := []string{"#comment", "||", "&&", ";", "reboot", "a||b", `x\`, ":label", "-n", "--", "exit", "gw=10.0.2.2", "h=n1", "initrd=main", "initrd=second.cpio"}
	assert.Equal(t, strings.Join(want, " "), m[1])
	assert.Regexp(t, `main : 5 bytes`, flat)
	assert.Regexp(t, `second\.cpio : 6 bytes`, flat)
}
