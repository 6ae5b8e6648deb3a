package dhcpsrv_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalboot/metalboot/dhcpsrv"
	"github.com/metalboot/metalboot/internal/netns"
)

// TestFirmwareAsksForItsBootFile powers on a UEFI machine (OVMF's own PXE,
// no iPXE ROM) and a BIOS machine (SeaBIOS + iPXE ROM) under QEMU in a test
// namespace. Each must accept dhcpsrv's answer and ask the next server over
// TFTP for the GRUB image of its architecture; the test's TFTP listener
// records the read requests (and answers "not found", ending the boot).
func TestFirmwareAsksForItsBootFile(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU (TCG): skipped in -short mode")
	}
	t.Parallel() // ~25 s of firmware under TCG: overlap with the other tests
	netns.Need(t, "qemu-system-x86_64")
	const ovmfCode, ovmfVars = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("OVMF firmware missing (apt-get install ovmf): %v", err)
		}
	}
	l := newLab(t)
	l.srv.Tap("tapefi", "br0")
	l.srv.Tap("tapbios", "br0")
	var leases sync.Map
	l.serve(labServer(func(s *dhcpsrv.Server) {
		s.OnLease = func(x dhcpsrv.Lease) { leases.Store(x.MAC.String(), x) }
		s.OnDiscover = func(e dhcpsrv.Event) {
			t.Logf("DISCOVER %s arch %s vendor %q uuid %s offered %s file %q", e.MAC, e.Arch, e.VendorClass, e.UUID, e.Offered, e.BootFile)
		}
		s.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}))

	// TFTP listener on the next server (10.99.0.1:69).
	var tftp net.PacketConn
	require.NoError(t, l.srv.Do(func() error {
		var err error
		tftp, err = net.ListenPacket("udp4", "10.99.0.1:69")
		return err
	}))
	defer tftp.Close()
	type rrq struct{ file, from string }
	got := make(chan rrq, 16)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := tftp.ReadFrom(buf)
			if err != nil {
				return
			}
			if n > 4 && buf[0] == 0 && buf[1] == 1 { // RRQ
				file, _, _ := bytes.Cut(buf[2:n], []byte{0})
				got <- rrq{string(file), from.String()}
				// ERROR 1 "File not found"
				_, _ = tftp.WriteTo(append([]byte{0, 5, 0, 1}, []byte("not found\x00")...), from)
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	vars := filepath.Join(dir, "vars.fd")
	b, err := os.ReadFile(ovmfVars)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(vars, b, 0o644))
	qemu := func(name string, args ...string) {
		// QEMU is run directly: netns.Command kills it (and only it)
		// when ctx ends or the test finishes.
		base := []string{"-accel", "tcg", "-m", "256", "-nodefaults", "-display", "none",
			"-serial", "file:" + filepath.Join(dir, name+".serial"), "-no-reboot"}
		cmd := l.srv.Command(ctx, "qemu-system-x86_64", append(base, args...)...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		go func() {
			_ = cmd.Wait()
			if ctx.Err() == nil {
				t.Logf("qemu %s exited: %s", name, out.String())
			}
		}()
	}
	qemu("efi", "-machine", "q35", "-uuid", "12345678-9abc-def0-1122-334455667701",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-netdev", "tap,id=n0,ifname=tapefi,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:bb:00:01,romfile=,bootindex=1")
	qemu("bios", "-machine", "pc", "-uuid", "12345678-9abc-def0-1122-334455667702",
		"-netdev", "tap,id=n0,ifname=tapbios,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:bb:00:02,bootindex=1")

	want := map[string]string{
		"52:54:00:bb:00:01": "grub/x86_64-efi/core.efi",
		"52:54:00:bb:00:02": "grub/i386-pc/core.0",
	}
	uuids := map[string]string{
		"52:54:00:bb:00:01": "12345678-9abc-def0-1122-334455667701",
		"52:54:00:bb:00:02": "12345678-9abc-def0-1122-334455667702",
	}
	seen := map[string]bool{}
	for len(seen) < len(want) {
		select {
		case r := <-got:
			t.Logf("TFTP read request %q from %s", r.file, r.from)
			for mac, file := range want {
				v, ok := leases.Load(mac)
				if !ok || r.file != file {
					continue
				}
				if ip := v.(dhcpsrv.Lease).IP.String(); strings.HasPrefix(r.from, ip+":") {
					seen[mac] = true
					assert.Equal(t, uuids[mac], v.(dhcpsrv.Lease).UUID, "option 97 read as QEMU's -uuid")
				}
			}
		case <-ctx.Done():
			for _, n := range []string{"efi", "bios"} {
				b, _ := os.ReadFile(filepath.Join(dir, n+".serial"))
				t.Logf("%s serial console:\n%s", n, b)
			}
			t.Fatalf("firmware did not request its boot file in time; seen %v", seen)
		}
	}
	cancel()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
